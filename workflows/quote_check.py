"""Checking a quote before we accept it: pure and deterministic, so the workflow can call it directly."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from mojaflow.codes import ErrorCode
from mojaflow.models import QuoteView, TransferOrder

__all__ = ["check_quote"]


def check_quote(
    quote: QuoteView, order: TransferOrder, *, now: datetime, max_fee: Decimal | None
) -> tuple[ErrorCode, str] | None:
    """None if the quote may be accepted; else the reason to decline it.

    Mojaloop's arithmetic: payeeReceiveAmount = transferAmount − payeeFspFee + payeeFspCommission; for SEND
    the payer sends exactly `amount`, for RECEIVE the payee receives exactly `amount`.
    """
    if quote.currency != order.currency:
        return ErrorCode.QUOTE_INVALID, "currency differs from the request"
    try:
        transfer_amount = Decimal(quote.transfer_amount)
        receive_amount = Decimal(quote.payee_receive_amount)
        fees = Decimal(quote.fees)
        commission = Decimal(quote.commission)
    except InvalidOperation:
        return ErrorCode.QUOTE_INVALID, "an amount is not a number"
    if min(fees, commission) < 0 or min(transfer_amount, receive_amount) <= 0:
        return ErrorCode.QUOTE_INVALID, "negative or zero amounts"
    requested = Decimal(order.amount)
    if order.amount_type == "SEND" and transfer_amount != requested:
        return ErrorCode.QUOTE_INVALID, "transferAmount differs from the amount sent"
    if order.amount_type == "RECEIVE" and receive_amount != requested:
        return ErrorCode.QUOTE_INVALID, "payeeReceiveAmount differs from the amount to receive"
    if receive_amount != transfer_amount - fees + commission:
        return ErrorCode.QUOTE_INVALID, "payeeReceiveAmount is not transferAmount - fees + commission"
    if quote.expiration is not None and quote.expiration <= now:
        return ErrorCode.QUOTE_EXPIRED, ""
    if max_fee is not None and fees > max_fee:
        return ErrorCode.FEE_LIMIT_EXCEEDED, ""
    return None
