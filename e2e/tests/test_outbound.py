"""Outbound transfers through our client API against the real SDK 18.0.2, with TTK as the switch and the payee's
FSP: every outcome the README promises, money held only after the quote is accepted and released on proof."""

from __future__ import annotations

import httpx
import pytest

from e2e.harness.ttk_rules import (
    PARTY_NOT_FOUND,
    PARTY_SILENT,
    QUOTE_REJECTED_AMOUNT,
    TRANSFER_REJECTED_AMOUNT,
    TRANSFER_SILENT_AMOUNT,
)
from e2e.tests.conftest import E2E
from e2e.tests.flows import MANUAL, balances, decide, send, switch_saw, wait_until
from tests.support.transfers import new_payer, transfer_body


async def test_auto_acceptance_completes_and_debits_once(e2e: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)

    transfer = await send(e2e, http, transfer_body(payer=payer, amount="10"))

    assert transfer["currentState"] == "COMPLETED", transfer.get("lastError")
    assert transfer["payee"] == {"name": "Test Payee", "fspId": "testingtoolkitdfsp"}
    assert await balances(e2e, http, account_id) == ("990.00", "0.00")
    switch = await switch_saw(e2e, http, transfer["sdkTransferId"])
    assert switch is not None
    assert (switch["prepares"], switch["state"]) == (1, "COMMITTED")


async def test_manual_party_then_quote_acceptance(e2e: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)

    transfer = await send(e2e, http, transfer_body(payer=payer, amount="25", **MANUAL))
    assert transfer["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    assert transfer["payee"]["name"] == "Test Payee"

    quoted = await decide(e2e, http, transfer["transferId"], {"acceptParty": True})
    assert quoted["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
    assert (quoted["quote"]["transferAmount"], quoted["quote"]["fees"]) == ("25", "0")
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")  # nothing held before acceptance

    done = await decide(e2e, http, transfer["transferId"], {"acceptQuote": True})
    assert done["currentState"] == "COMPLETED", done.get("lastError")
    assert await balances(e2e, http, account_id) == ("975.00", "0.00")


async def test_quote_declined_by_us_aborts_with_nothing_held(e2e: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)
    transfer = await send(e2e, http, transfer_body(payer=payer, amount="25", **MANUAL))
    await decide(e2e, http, transfer["transferId"], {"acceptParty": True})

    declined = await decide(e2e, http, transfer["transferId"], {"acceptQuote": False})

    assert declined["currentState"] == "ABORTED"
    assert declined["lastError"]["code"] == "quote_declined"
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")
    assert await switch_saw(e2e, http, transfer["sdkTransferId"]) is None  # no prepare ever left


@pytest.mark.parametrize(
    ("overrides", "code", "fspiop"),
    [
        ({"payee": PARTY_NOT_FOUND}, "party_not_found", "3204"),
        ({"amount": QUOTE_REJECTED_AMOUNT}, "payee_rejected", "5101"),
    ],
    ids=["party-not-found-3204", "quote-rejected-5101"],
)
async def test_refusals_before_the_money_step_hold_nothing(
    e2e: E2E, http: httpx.AsyncClient, overrides: dict[str, str], code: str, fspiop: str
) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url, balance="10000.00")

    transfer = await send(e2e, http, transfer_body(payer=payer, **overrides))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert (transfer["lastError"]["code"], transfer["lastError"].get("fspiopErrorCode")) == (code, fspiop)
    assert await balances(e2e, http, account_id) == ("10000.00", "0.00")
    assert await switch_saw(e2e, http, transfer["sdkTransferId"]) is None


async def test_transfer_rejected_by_the_payee_releases_the_hold(e2e: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url, balance="10000.00")

    transfer = await send(e2e, http, transfer_body(payer=payer, amount=TRANSFER_REJECTED_AMOUNT))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert (transfer["lastError"]["code"], transfer["lastError"]["fspiopErrorCode"]) == ("payee_rejected", "5105")
    assert transfer["timestamps"]["fundsHeldAt"]  # held for the money step, then released
    assert await balances(e2e, http, account_id) == ("10000.00", "0.00")
    switch = await switch_saw(e2e, http, transfer["sdkTransferId"])
    assert switch is not None
    assert (switch["prepares"], switch["state"], switch["error_code"]) == (1, "ABORTED", "5105")


async def test_party_lookup_timeout_is_a_clear_error_and_moves_nothing(e2e: E2E, http: httpx.AsyncClient) -> None:
    """TTK never answers the lookup: the SDK gives up after REQUEST_PROCESSING_TIMEOUT_SECONDS (504)."""
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)

    transfer = await send(e2e, http, transfer_body(payer=payer, payee=PARTY_SILENT))

    assert transfer["currentState"] == "ERROR_OCCURRED"
    assert transfer["lastError"]["code"] == "timeout"
    assert transfer["lastError"]["message"] == "the scheme did not answer in time"
    assert "quote" not in transfer
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")


async def test_an_unanswered_prepare_is_reconciled_until_the_switch_expires_it(
    e2e: E2E, http: httpx.AsyncClient
) -> None:
    """TTK keeps the prepare and never fulfils it: the SDK answers 504, we ask the switch, which says RESERVED
    until the prepare's expiration, then ABORTED (TTK itself would say COMMITTED, with a valid fulfilment)."""
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)

    transfer = await send(e2e, http, transfer_body(payer=payer, amount=TRANSFER_SILENT_AMOUNT), respond_async=True)
    reconciling = await wait_until(http, e2e, transfer["transferId"], {"RECONCILING"}, timeout_s=30)
    assert await balances(e2e, http, account_id) == ("1000.00", "504.00")  # on hold while the switch decides

    done = await wait_until(http, e2e, transfer["transferId"], {"COMPLETED", "ABORTED", "ERROR_OCCURRED"})
    assert (done["currentState"], done["lastError"]["code"]) == ("ABORTED", "transfer_aborted")
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")
    switch = await switch_saw(e2e, http, reconciling["sdkTransferId"])
    assert switch is not None
    assert (switch["prepares"], switch["state"], switch["fulfilment"]) == (1, "ABORTED", None)
