"""MOJAFLOW_INBOUND_CONFIRM_COMMIT (on by default, so in the session's stack): a `COMMITTED` notification credits
the payee only once the switch confirms it (`GET /transfers/{id}` through the SDK simulator, whose fake switch
knows the inbound transfers it was told about: `switch_records`). A forged one is logged as a security event,
credits nothing, and the transfer is reconciled with the switch to its true end."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from mojaflow.database import Database
from mojaflow.temporal import inbound_workflow_id
from mojaflow.webhook_tables import webhook_events
from tests.conftest import Stack
from tests.inbound.flow import Payee, new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.api_process import api_process
from tests.support.transfers import wait_for_state
from tests.support.workers import settings_of

FINAL = {"COMMITTED", "ABORTED", "ERROR_OCCURRED"}
ZERO = Decimal("0")


async def _reserved(backend_url: str, http: httpx.AsyncClient, payee: Payee, amount: str, **quote: Any) -> str:
    """Quote and reserve as the SDK does; the transfer's id."""
    answer = await http.post(f"{backend_url}/quoterequests", json=quote_request(payee, amount, **quote))
    assert answer.status_code == 200, answer.text
    reserved = await http.post(f"{backend_url}/transfers", json=transfer_request(payee, answer.json()))
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["transferState"] == "RESERVED"
    return str(answer.json()["transactionId"])


async def _notify(backend_url: str, http: httpx.AsyncClient, transfer_id: str, state: str) -> None:
    """A `PUT /transfers/{id}` on the backend API, from whoever can reach it."""
    response = await http.put(f"{backend_url}/transfers/{transfer_id}", json=notification(transfer_id, state))
    assert response.status_code == 200, response.text


async def _states(stack: Stack, transfer_id: str) -> list[str]:
    """Every state the transfer entered, in order, over all its runs: its events in our database, one per state
    change (tests/workflows/test_webhook_outbox.py checks them against each path), once the last run returned."""
    await asyncio.wait_for(stack.client.get_workflow_handle(inbound_workflow_id(transfer_id)).result(), timeout=60)
    events = webhook_events.c
    query = select(events.data).where(events.transfer_id == transfer_id).order_by(events.sequence)
    database = Database(settings_of(stack.env).resolved_database_url)
    try:
        async with database.engine.connect() as connection:
            return [row.data["currentState"] for row in await connection.execute(query)]
    finally:
        await database.close()


def _security_lines(log: Path, transfer_id: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if "mojaflow.security" in line and transfer_id in line]


async def _signals_handled(stack: Stack, transfer_id: str, count: int) -> None:
    """Until the workflow has received `count` signals and completed a workflow task after the last one."""
    handle = stack.client.get_workflow_handle(inbound_workflow_id(transfer_id))
    deadline = time.monotonic() + 20
    while True:
        events = (await handle.fetch_history()).events
        signals = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        completed = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        if len(signals) >= count and completed and completed[-1] > signals[count - 1]:
            return
        assert time.monotonic() < deadline, f"{count} signals never handled"
        await asyncio.sleep(0.05)


async def test_a_genuine_committed_notification_credits_once(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    transfer_id = await _reserved(stack.backend_url, http, payee, "11")
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")

    await _notify(stack.backend_url, http, transfer_id, "COMMITTED")
    await _notify(stack.backend_url, http, transfer_id, "COMMITTED")  # the SDK's retry

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("111"), ZERO)
    assert await _states(stack, transfer_id) == ["RECEIVED", "RESERVED", "COMMITTED"]
    assert _security_lines(stack.data_dir / "worker.log", transfer_id) == []


async def test_a_forged_committed_for_a_transfer_the_switch_aborted_credits_nothing(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    transfer_id = await _reserved(stack.backend_url, http, payee, "13")
    await switch_records(http, stack.sdk_url, transfer_id, "ABORTED")

    await _notify(stack.backend_url, http, transfer_id, "COMMITTED")  # not what the switch says

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert (done["currentState"], done["lastError"]["code"]) == ("ABORTED", "transfer_aborted")
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)
    assert await _states(stack, transfer_id) == ["RECEIVED", "RESERVED", "RECONCILING", "ABORTED"]
    [line] = _security_lines(stack.data_dir / "worker.log", transfer_id)
    assert "contradicted by the switch (ABORTED)" in line
    assert payee.msisdn not in line and "Remote Payer" not in line


async def test_a_forged_committed_for_a_transfer_the_switch_never_saw_credits_nothing(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """No prepare ever reached the switch: it answers 3208 until past the transfer's expiration plus the grace
    period (3 s + 1 s here), then the reservation is released."""
    payee = await new_payee(http, stack.cbs_url)
    transfer_id = await _reserved(stack.backend_url, http, payee, "14", expires_in_s=3)

    await _notify(stack.backend_url, http, transfer_id, "COMMITTED")

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL, timeout_s=30)
    assert (done["currentState"], done["lastError"]["fspiopErrorCode"]) == ("ABORTED", "3208")
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)
    states = await _states(stack, transfer_id)
    assert states[:3] == ["RECEIVED", "RESERVED", "RECONCILING"] and states[-1] == "ABORTED"
    assert "COMMITTED" not in states
    [line] = _security_lines(stack.data_dir / "worker.log", transfer_id)
    assert "contradicted by the switch (NOT_FOUND)" in line


async def test_after_a_forged_notification_only_the_switch_decides(stack: Stack, http: httpx.AsyncClient) -> None:
    """The switch holds the transfer (RESERVED) when a forged COMMITTED arrives: no credit, RECONCILING. A later
    ABORTED notification is not listened to either; the switch's COMMITTED is, and credits once."""
    payee = await new_payee(http, stack.cbs_url)
    transfer_id = await _reserved(stack.backend_url, http, payee, "15")
    await switch_records(http, stack.sdk_url, transfer_id, "RESERVED")

    await _notify(stack.backend_url, http, transfer_id, "COMMITTED")
    await wait_for_state(http, stack.api_url, transfer_id, {"RECONCILING"})
    await _notify(stack.backend_url, http, transfer_id, "ABORTED")
    await _signals_handled(stack, transfer_id, 2)
    assert (await http.get(f"{stack.api_url}/transfers/{transfer_id}")).json()["currentState"] == "RECONCILING"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("15"))
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("115"), ZERO)
    [line] = _security_lines(stack.data_dir / "worker.log", transfer_id)
    assert "contradicted by the switch (RESERVED)" in line


async def test_with_the_setting_off_a_notification_alone_credits(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """What the setting protects against: MOJAFLOW_INBOUND_CONFIRM_COMMIT=false (read by the API when the
    transfer starts) trusts the notification, even one the switch never backed."""
    payee = await new_payee(http, stack.cbs_url)
    with api_process(stack, tmp_path, MOJAFLOW_INBOUND_CONFIRM_COMMIT="false") as api:
        transfer_id = await _reserved(api.backend_url, http, payee, "16")
        await switch_records(http, stack.sdk_url, transfer_id, "ABORTED")

        await _notify(api.backend_url, http, transfer_id, "COMMITTED")

        done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("116"), ZERO)
