"""JWS on in both the SDK and TTK (keys made by the harness, e2e/harness/jws.py): every FSPIOP message is signed
and checked, both ways, and the switch front signs its own answers. The same happy paths as without, on a stack
of their own (same Temporal server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from e2e.harness.jws import compact_json, fspiop_signature
from e2e.harness.stack import e2e_stack
from e2e.harness.ttk import inbound_template, run_inbound
from e2e.tests.conftest import E2E
from e2e.tests.flows import balances, send, switch_saw, wait_until
from tests.inbound.flow import new_payee
from tests.support.transfers import new_payer, transfer_body


@pytest.fixture(scope="module")
def signed(
    temporal: WorkflowEnvironment, payload_key: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    with e2e_stack(temporal, payload_key, tmp_path_factory.mktemp("e2e-jws"), jws=True) as (stack, mojaloop):
        yield E2E(stack, mojaloop)
    assert not mojaloop.guard_refusals(), mojaloop.guard_refusals()


async def test_outbound_completes_with_signed_messages(signed: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, signed.stack.cbs_url)

    transfer = await send(signed, http, transfer_body(payer=payer, amount="10"))

    assert transfer["currentState"] == "COMPLETED", transfer.get("lastError")
    assert await balances(signed, http, account_id) == ("990.00", "0.00")
    switch = await switch_saw(signed, http, transfer["sdkTransferId"])
    assert switch is not None
    assert (switch["prepares"], switch["state"], switch["signed"]) == (1, "COMMITTED", True)


async def test_inbound_is_credited_with_signed_messages(signed: E2E, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, signed.stack.cbs_url)

    run = await run_inbound(http, signed.mojaloop.ttk_admin_url, inbound_template(payee.msisdn, "25", "COMMITTED"))

    assert run.failed_assertions == []
    done = await wait_until(http, signed, run.transfer_id, {"COMMITTED", "ABORTED", "ERROR_OCCURRED"})
    assert done["currentState"] == "COMMITTED", done.get("lastError")  # confirmed by a signed answer of the switch
    assert await payee.balances(http, signed.stack.cbs_url) == (Decimal("125"), Decimal("0"))
    switch = await switch_saw(signed, http, run.transfer_id)
    assert switch is not None
    assert (switch["state"], switch["signed"], switch["queries"]) == ("COMMITTED", True, 1)


async def test_the_sdk_refuses_a_callback_whose_signature_does_not_match(signed: E2E, http: httpx.AsyncClient) -> None:
    """Validation is really on: a body other than the one signed is refused with 3105."""
    assert signed.mojaloop.jws is not None
    path = f"/transfers/{uuid.uuid4()}"
    headers = {
        "Content-Type": "application/vnd.interoperability.transfers+json;version=1.0",
        "Accept": "application/vnd.interoperability.transfers+json;version=1.0",
        "Date": "Thu, 03 Dec 2026 09:00:00 GMT",
        "FSPIOP-Source": "testingtoolkitdfsp",
        "FSPIOP-Destination": "pm4mldfsp",
    }
    signed_body = compact_json({"transferState": "ABORTED"})
    headers |= fspiop_signature(signed.mojaloop.jws.switch_key, "PUT", path, headers, signed_body)
    sent = compact_json({"transferState": "COMMITTED", "fulfilment": "x" * 43})

    response = await http.put(f"{signed.mojaloop.sdk_inbound_url}{path}", content=sent, headers=headers)

    assert response.status_code == 400
    assert response.json()["errorInformation"]["errorCode"] == "3105"
