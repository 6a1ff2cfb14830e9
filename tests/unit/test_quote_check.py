"""The quote check alone: pure arithmetic, no servers needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mojaflow.codes import ErrorCode
from mojaflow.models import QuoteView, TransferOrder, TransferRequest
from workflows.quote_check import check_quote

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _request(amount: str = "100", amount_type: str = "SEND") -> TransferOrder:
    return TransferRequest.model_validate(
        {
            "homeTransactionId": "h",
            "from": {"idType": "MSISDN", "idValue": "1"},
            "to": {"idType": "MSISDN", "idValue": "2"},
            "amountType": amount_type,
            "currency": "USD",
            "amount": amount,
            "transactionType": "TRANSFER",
        }
    ).order()


def _quote(
    transfer: str = "100", receive: str = "100", fees: str = "0", commission: str = "0", **kw: object
) -> QuoteView:
    return QuoteView(
        currency=kw.get("currency", "USD"),  # type: ignore[arg-type]
        transfer_amount=transfer,
        payee_receive_amount=receive,
        fees=fees,
        commission=commission,
        expiration=kw.get("expiration", NOW + timedelta(minutes=1)),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("quote", "request_", "expected"),
    [
        (_quote(), _request(), None),
        (_quote("100", "98", fees="2"), _request(), None),
        (_quote("100", "99", fees="2", commission="1"), _request(), None),
        (_quote("102", "100", fees="2"), _request(amount_type="RECEIVE"), None),
        (_quote("101", "101"), _request(), ErrorCode.QUOTE_INVALID),  # payer would send more than asked
        (_quote("100", "100", fees="2"), _request(), ErrorCode.QUOTE_INVALID),  # arithmetic does not add up
        (_quote("100", "99"), _request(amount_type="RECEIVE"), ErrorCode.QUOTE_INVALID),
        (_quote(currency="EUR"), _request(), ErrorCode.QUOTE_INVALID),
        (_quote("100", "100", fees="-1", commission="-1"), _request(), ErrorCode.QUOTE_INVALID),
        (_quote("abc", "100"), _request(), ErrorCode.QUOTE_INVALID),
        (_quote(expiration=NOW), _request(), ErrorCode.QUOTE_EXPIRED),
        (_quote("100", "94", fees="6"), _request(), ErrorCode.FEE_LIMIT_EXCEEDED),
    ],
)
def test_check_quote(quote: QuoteView, request_: TransferRequest, expected: ErrorCode | None) -> None:
    problem = check_quote(quote, request_, now=NOW, max_fee=Decimal("5"))
    assert (problem[0] if problem else None) == expected


def test_no_fee_cap_accepts_any_fee() -> None:
    assert check_quote(_quote("100", "50", fees="50"), _request(), now=NOW, max_fee=None) is None
