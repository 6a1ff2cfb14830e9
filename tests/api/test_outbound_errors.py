"""Outbound transfers that do not complete: each scheme error and each refusal ends in its stable code."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack
from tests.support.transfers import account, money_movement_headers, new_payer, set_fault, transfer_body

PARTY_NOT_FOUND = "25600000404"
PARTY_TIMEOUT = "25600000408"


async def _send(stack: Stack, http: httpx.AsyncClient, body: dict) -> dict:
    response = await http.post(f"{stack.api_url}/transfers", json=body, headers=money_movement_headers())
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize(
    ("overrides", "code", "fspiop"),
    [
        ({"payee": PARTY_NOT_FOUND}, "party_not_found", "3204"),
        ({"payee": PARTY_TIMEOUT}, "timeout", None),
        ({"amount": "500"}, "payee_rejected", "5101"),
    ],
    ids=["party-not-found", "party-timeout", "quote-rejected"],
)
async def test_scheme_errors_before_the_money_step_hold_nothing(
    stack: Stack, http: httpx.AsyncClient, overrides: dict, code: str, fspiop: str | None
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)

    transfer = await _send(stack, http, transfer_body(payer=payer, **overrides))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert transfer["lastError"]["code"] == code
    assert transfer["lastError"].get("fspiopErrorCode") == fspiop
    assert PARTY_NOT_FOUND not in transfer["lastError"]["message"]
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")


async def test_transfer_rejected_by_the_payee_releases_the_hold(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)

    transfer = await _send(stack, http, transfer_body(payer=payer, amount="600"))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert transfer["lastError"] == {
        "code": "payee_rejected",
        "message": transfer["lastError"]["message"],
        "fspiopErrorCode": "5105",
    }
    assert transfer["timestamps"]["fundsHeldAt"]  # it was held, then released
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"], balances["available"]) == ("1000.00", "0.00", "1000.00")


async def test_insufficient_funds_aborts_and_declines_the_quote(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url, balance="5.00")

    transfer = await _send(stack, http, transfer_body(payer=payer, amount="10"))

    assert transfer["currentState"] == "ABORTED"
    assert transfer["lastError"]["code"] == "insufficient_funds"
    sdk = (await http.get(f"{stack.sdk_url}/_sim/transfers/{transfer['sdkTransferId']}")).json()
    assert (sdk["currentState"], sdk["prepareCount"]) == ("ABORTED", 0)
    assert (await account(http, stack.cbs_url, account_id))["balance"] == "5.00"


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"quoteFee": "6"}, "fee_limit_exceeded"),  # the test stack runs with MOJAFLOW_MAX_FEE=5
        ({"quoteExpiresInS": -5}, "quote_expired"),
        ({"quoteTransferAmountDelta": "1"}, "quote_invalid"),
    ],
    ids=["fee-cap", "expired", "inconsistent"],
)
async def test_a_quote_that_fails_our_checks_is_declined(
    stack: Stack, http: httpx.AsyncClient, fault: dict, code: str
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer)
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], **fault)

    transfer = await _send(stack, http, body)

    assert transfer["currentState"] == "ABORTED"
    assert transfer["lastError"]["code"] == code
    sdk = (await http.get(f"{stack.sdk_url}/_sim/transfers/{transfer['sdkTransferId']}")).json()
    assert (sdk["currentState"], sdk["prepareCount"]) == ("ABORTED", 0)
    assert (await account(http, stack.cbs_url, account_id))["held"] == "0.00"


async def test_a_fee_within_the_cap_is_accepted(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="100")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], quoteFee="5")

    transfer = await _send(stack, http, body)

    assert transfer["currentState"] == "COMPLETED"
    assert len(transfer["quote"]["condition"]) == 43  # base64url of a SHA-256: what the fulfilment is checked against
    assert transfer["quote"] | {"expiration": None, "quoteId": None, "condition": None} == {
        "quoteId": None,
        "currency": "USD",
        "transferAmount": "100",
        "payeeReceiveAmount": "95",
        "fees": "5",
        "commission": "0",
        "expiration": None,
        "condition": None,
    }
    assert (await account(http, stack.cbs_url, account_id))["balance"] == "900.00"


async def test_unknown_payer_is_an_error_before_the_scheme_is_asked(stack: Stack, http: httpx.AsyncClient) -> None:
    transfer = await _send(stack, http, transfer_body(payer="25699999999"))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert transfer["lastError"]["code"] == "payer_not_found"
    assert "sdkTransferId" not in transfer
