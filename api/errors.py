"""What the transfer service raises: domain errors, free of any wire format. Each front door maps them to its own
dialect (`api.transfers`: RFC 9457 problems; `api.send_money`: `{statusCode, message}`).

* TransferServiceError
  x IdempotencyKeyReused     - the key (or homeTransactionId) was already used with another request
  x TransferNotFound         - no such transfer for this caller (another client's is not found either)
  x HomeTransactionMismatch  - the request's homeTransactionId is not the transfer's
  x InvalidState             - the transfer does not (or no longer) await that decision
  x TemporalUnavailable      - the workflow service did not answer; the request may be retried as it was
"""

from __future__ import annotations

from mojaflow.models import TransferView

__all__ = [
    "HomeTransactionMismatch",
    "IdempotencyKeyReused",
    "InvalidState",
    "TemporalUnavailable",
    "TransferNotFound",
    "TransferServiceError",
]


class TransferServiceError(Exception):
    """Base class: everything `api.transfer_service` refuses with."""


class IdempotencyKeyReused(TransferServiceError):
    """The idempotency key is bound to another request body: it names another request, for good."""


class TransferNotFound(TransferServiceError):
    """No transfer with this id that this caller may see or act on."""

    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"no transfer with id {transfer_id}")
        self.transfer_id = transfer_id


class HomeTransactionMismatch(TransferServiceError):
    """A decision named a homeTransactionId other than its transfer's."""


class InvalidState(TransferServiceError):
    """Nothing of the transfer awaits that decision; `view` is the transfer as it stands (saved)."""

    def __init__(self, detail: str, view: TransferView) -> None:
        super().__init__(detail)
        self.detail = detail
        self.view = view


class TemporalUnavailable(TransferServiceError):
    """The workflow service did not answer: retry the same request (a transfer never starts twice)."""
