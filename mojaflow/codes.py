"""Stable error codes of a transfer (`lastError.code`), and how FSPIOP error codes map onto them.

One table, also in the README. Messages are ours: they never repeat the SDK's text (which may echo a party
id) and never hold personal data.
"""

from __future__ import annotations

from enum import StrEnum

from mojaflow.models import TransferError

__all__ = ["ErrorCode", "fspiop_code", "from_fspiop", "transfer_error"]


class ErrorCode(StrEnum):
    PAYER_NOT_FOUND = "payer_not_found"
    PAYER_ACCOUNT_UNAVAILABLE = "payer_account_unavailable"
    PARTY_NOT_FOUND = "party_not_found"
    PARTY_REJECTED = "party_rejected"
    PAYEE_REJECTED = "payee_rejected"
    SWITCH_ERROR = "switch_error"
    TIMEOUT = "timeout"
    SDK_ERROR = "sdk_error"
    SDK_MISCONFIGURED = "sdk_misconfigured"
    SDK_UNAVAILABLE = "sdk_unavailable"
    CBS_UNAVAILABLE = "cbs_unavailable"
    SETTLEMENT_FAILED = "settlement_failed"
    RELEASE_FAILED = "release_failed"
    FULFILMENT_INVALID = "fulfilment_invalid"
    FULFILMENT_UNVERIFIED = "fulfilment_unverified"
    CANCELLED = "cancelled"
    QUOTE_INVALID = "quote_invalid"
    QUOTE_EXPIRED = "quote_expired"
    FEE_LIMIT_EXCEEDED = "fee_limit_exceeded"
    QUOTE_DECLINED = "quote_declined"
    ACCEPTANCE_TIMEOUT = "acceptance_timeout"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    HOLD_REFUSED = "hold_refused"
    TRANSFER_ABORTED = "transfer_aborted"
    TRANSFER_NOT_FOUND = "transfer_not_found"
    # inbound
    QUOTE_MISMATCH = "quote_mismatch"
    CREDIT_REFUSED = "credit_refused"


_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.PAYER_NOT_FOUND: "the core banking system does not know the payer",
    ErrorCode.PAYER_ACCOUNT_UNAVAILABLE: "the payer's account is blocked or closed",
    ErrorCode.PARTY_NOT_FOUND: "the payee could not be found in the scheme",
    ErrorCode.PARTY_REJECTED: "the payee was rejected by the caller",
    ErrorCode.PAYEE_REJECTED: "the payee's FSP rejected the request",
    ErrorCode.SWITCH_ERROR: "the switch rejected the request",
    ErrorCode.TIMEOUT: "the scheme did not answer in time",
    ErrorCode.SDK_ERROR: "Payment Manager answered with an error",
    ErrorCode.SDK_MISCONFIGURED: (
        "Payment Manager must run with AUTO_ACCEPT_PARTY=false and AUTO_ACCEPT_QUOTES=false; "
        "it went past the step asked for"
    ),
    ErrorCode.SDK_UNAVAILABLE: "Payment Manager could not be reached; nothing was sent",
    ErrorCode.CBS_UNAVAILABLE: "the core banking system could not be reached; nothing was held",
    ErrorCode.SETTLEMENT_FAILED: "the core banking system refused to settle the hold; needs a person",
    ErrorCode.RELEASE_FAILED: "the core banking system refused to release the hold; needs a person",
    ErrorCode.FULFILMENT_INVALID: "the switch's fulfilment does not match the quote's condition; needs a person",
    ErrorCode.CANCELLED: "cancelled by an operator before any money could move; any hold was released",
    ErrorCode.FULFILMENT_UNVERIFIED: "committed without a condition to check the fulfilment against; needs a person",
    ErrorCode.QUOTE_INVALID: "the quote's amounts or currency do not match the request",
    ErrorCode.QUOTE_EXPIRED: "the quote had expired",
    ErrorCode.FEE_LIMIT_EXCEEDED: "the quote's fees exceed the configured maximum",
    ErrorCode.QUOTE_DECLINED: "the quote was declined by the caller",
    ErrorCode.ACCEPTANCE_TIMEOUT: "no acceptance decision arrived in time",
    ErrorCode.INSUFFICIENT_FUNDS: "the payer's available balance is too low",
    ErrorCode.HOLD_REFUSED: "the core banking system refused to hold the funds",
    ErrorCode.TRANSFER_ABORTED: "the switch aborted the transfer; the held funds were released",
    ErrorCode.TRANSFER_NOT_FOUND: "the switch never received the transfer; the held funds were released",
    ErrorCode.QUOTE_MISMATCH: "the transfer does not match its quote",
    ErrorCode.CREDIT_REFUSED: "the core banking system refused the credit",
}


def from_fspiop(fspiop_code: str | None, http_status: int) -> ErrorCode:
    """FSPIOP API v1.1 error categories: 2xxx server, 3204 party not found, 4xxx payer, 5xxx payee."""
    if fspiop_code == "3204":
        return ErrorCode.PARTY_NOT_FOUND
    if fspiop_code and fspiop_code.startswith("5"):
        return ErrorCode.PAYEE_REJECTED
    if fspiop_code and fspiop_code[0] in "1234":
        return ErrorCode.SWITCH_ERROR
    if http_status == 504:
        return ErrorCode.TIMEOUT
    return ErrorCode.SDK_ERROR


def transfer_error(code: ErrorCode, fspiop_error_code: str | None = None, detail: str | None = None) -> TransferError:
    message = _MESSAGES[code] + (f" ({detail})" if detail else "")
    return TransferError(code=code.value, message=message, fspiop_error_code=fspiop_error_code)


# The FSPIOP code of an outcome that carries none (API Definition v1.1): what the Send Money API answers in
# `statusCode`. 2xxx server, 3xxx client (3100 validation, 3302 quote expired), 4xxx payer (4000 generic, 4101
# payer rejected, 4200 payer limit, 4400 payer blocked).
_FSPIOP: dict[ErrorCode, str] = {
    ErrorCode.PAYER_NOT_FOUND: "4000",
    ErrorCode.PAYER_ACCOUNT_UNAVAILABLE: "4400",
    ErrorCode.INSUFFICIENT_FUNDS: "4000",
    ErrorCode.HOLD_REFUSED: "4000",
    ErrorCode.PARTY_REJECTED: "4101",
    ErrorCode.QUOTE_DECLINED: "4101",
    ErrorCode.FEE_LIMIT_EXCEEDED: "4200",
    ErrorCode.ACCEPTANCE_TIMEOUT: "3302",
    ErrorCode.QUOTE_EXPIRED: "3302",
    ErrorCode.QUOTE_INVALID: "3100",
    ErrorCode.TIMEOUT: "2004",
    ErrorCode.SDK_UNAVAILABLE: "2003",
    ErrorCode.CBS_UNAVAILABLE: "2003",
}


def fspiop_code(error: TransferError | None) -> str:
    """The FSPIOP code of a transfer's outcome: the one it carries (3204, 5101, ...), else ours; 2001 otherwise."""
    if error is None:
        return "2001"
    if error.fspiop_error_code:
        return error.fspiop_error_code
    try:
        return _FSPIOP.get(ErrorCode(error.code), "2001")
    except ValueError:
        return "2001"
