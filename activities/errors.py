"""Errors raised by the clients in `activities`.

* CoreBankingError
  x CoreBankingUnavailable - network error, timeout, 5xx, 401/403/408/429, or any 4xx that is not a refusal the
                             contract documents for that operation: retried by Temporal
  x CoreBankingRefused     - a documented business refusal (funds, account status, limits, unknown party): never
                             retried
"""

from __future__ import annotations

__all__ = ["CoreBankingError", "CoreBankingRefused", "CoreBankingUnavailable"]


class CoreBankingError(Exception):
    """Base class: catch this around any call to the CBS."""


class CoreBankingUnavailable(CoreBankingError):
    """The CBS did not answer usefully (network error, timeout, 5xx, undocumented 4xx); safe to retry, every call
    is idempotent."""


class CoreBankingRefused(CoreBankingError):
    """The CBS answered no. `code` is the contract's error code (`insufficient_funds`, `party_not_found`, ...),
    one documented for the operation and `status`."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
