"""Inbound transfers driven by TTK's template, as the payer's FSP and the switch: GET /parties → POST /quotes →
POST /transfers → PATCH /transfers/{id}. The real SDK calls our backend API; the CBS simulator holds the payee's
account. Our inbound transfers end `COMMITTED` (the payee side's word for a completed transfer) or `ABORTED`."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from e2e.harness.ttk import inbound_template, run_inbound
from e2e.tests.conftest import E2E
from e2e.tests.flows import switch_saw, wait_until
from mojaflow.temporal import inbound_workflow_id
from tests.inbound.flow import new_payee

FINAL = {"COMMITTED", "COMPLETED", "ABORTED", "ERROR_OCCURRED"}


async def _search_attributes(e2e: E2E, transfer_id: str) -> dict[str, object]:
    """What the Web UI shows of the transfer's workflow (its search attributes)."""
    description = await e2e.stack.client.get_workflow_handle(inbound_workflow_id(transfer_id)).describe()
    return {pair.key.name: pair.value for pair in description.typed_search_attributes}


async def test_inbound_transfer_is_credited_exactly_once(e2e: E2E, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, e2e.stack.cbs_url)

    run = await run_inbound(http, e2e.mojaloop.ttk_admin_url, inbound_template(payee.msisdn, "25", "COMMITTED"))

    assert run.failed_assertions == []
    done = await wait_until(http, e2e, run.transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED", done.get("lastError")
    assert (done["direction"], done["amount"], done["currency"]) == ("INBOUND", "25", "USD")
    assert await payee.balances(http, e2e.stack.cbs_url) == (Decimal("125"), Decimal("0"))
    attributes = await _search_attributes(e2e, run.transfer_id)
    assert (attributes["MojaflowState"], attributes["Direction"]) == ("COMMITTED", "INBOUND")
    assert attributes["SdkTransferId"] == run.transfer_id
    switch = await switch_saw(e2e, http, run.transfer_id)
    assert switch is not None
    assert (switch["direction"], switch["prepares"], switch["state"]) == ("INBOUND", 1, "COMMITTED")
    assert switch["fulfilment"]  # the SDK (payee side) made it from our quote's condition


async def test_inbound_transfer_the_switch_aborts_credits_nothing(e2e: E2E, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, e2e.stack.cbs_url)

    run = await run_inbound(http, e2e.mojaloop.ttk_admin_url, inbound_template(payee.msisdn, "30", "ABORTED"))

    assert run.failed_assertions == []
    done = await wait_until(http, e2e, run.transfer_id, FINAL)
    assert (done["currentState"], done["lastError"]["code"]) == ("ABORTED", "transfer_aborted")
    assert await payee.balances(http, e2e.stack.cbs_url) == (Decimal("100"), Decimal("0"))
    assert (await _search_attributes(e2e, run.transfer_id))["MojaflowState"] == "ABORTED"


@pytest.mark.parametrize("amount", ["12.5"])
async def test_a_second_notification_credits_nothing_more(e2e: E2E, http: httpx.AsyncClient, amount: str) -> None:
    """The SDK may forward a notification twice: the switch repeats its PATCH; the payee is credited once."""
    payee = await new_payee(http, e2e.stack.cbs_url)
    template = inbound_template(payee.msisdn, amount, "COMMITTED")
    patch = template["test_cases"][0]["requests"][3]
    template["test_cases"][0]["requests"].append({**patch, "id": 5, "description": "the same PATCH again"})

    run = await run_inbound(http, e2e.mojaloop.ttk_admin_url, template)

    assert run.failed_assertions == []
    done = await wait_until(http, e2e, run.transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, e2e.stack.cbs_url) == (Decimal("112.5"), Decimal("0"))
