"""Our worker SIGKILLed during the money step, against the real SDK: a new worker reconciles through the SDK's
`GET /transfers/{id}`, the switch (its front, e2e/harness/switch.py) answers from what it saw, and money moves at
most once. The real window is ~0.1 s, so the switch front holds the prepare until the worker is dead: the tests
wait for events (the prepare held, the activity started), never for time."""

from __future__ import annotations

import os
import signal

import httpx
from temporalio.api.enums.v1 import PendingActivityState

from e2e.tests.conftest import E2E
from e2e.tests.flows import (
    MANUAL,
    balances,
    decide,
    held_prepare,
    hold_next_prepare,
    release_prepare,
    send,
    switch_queries_of_unknown,
    switch_saw,
    wait_until,
)
from mojaflow.temporal import outbound_workflow_id
from tests.support.transfers import money_movement_headers, new_payer, transfer_body
from tests.support.workers import wait_for_pending_activity

FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}


def _replace_worker(e2e: E2E) -> None:
    e2e.stack.worker.kill()
    e2e.stack.worker = e2e.stack.worker_process().start()


async def test_worker_killed_while_the_prepare_is_on_its_way_completes_with_one_prepare(
    e2e: E2E, http: httpx.AsyncClient
) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)
    await hold_next_prepare(e2e, http)
    transfer = await send(e2e, http, transfer_body(payer=payer, amount="10"), respond_async=True)
    sdk_transfer_id = await held_prepare(e2e, http)  # acceptQuote is in flight: the SDK is sending the prepare
    assert await balances(e2e, http, account_id) == ("1000.00", "10.00")

    e2e.stack.worker.kill()
    await release_prepare(e2e, http, sdk_transfer_id, forward=True)  # reaches TTK only once the worker is dead
    e2e.stack.worker = e2e.stack.worker_process().start()

    done = await wait_until(http, e2e, transfer["transferId"], FINAL)
    assert done["currentState"] == "COMPLETED", done.get("lastError")
    assert await balances(e2e, http, account_id) == ("990.00", "0.00")
    switch = await switch_saw(e2e, http, sdk_transfer_id)
    assert switch is not None
    assert (switch["prepares"], switch["state"]) == (1, "COMMITTED")
    assert switch["queries"] >= 1  # the new worker asked the switch, through the SDK


async def test_worker_killed_while_the_prepare_never_leaves_the_sdk_releases_the_hold(
    e2e: E2E, http: httpx.AsyncClient
) -> None:
    """The switch never sees the prepare (the front resets the SDK's connection): it answers 3208 until the
    prepare's expiration plus our grace has passed, and only then is the hold released."""
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)
    await hold_next_prepare(e2e, http)
    transfer = await send(e2e, http, transfer_body(payer=payer, amount="10"), respond_async=True)
    sdk_transfer_id = await held_prepare(e2e, http)

    e2e.stack.worker.kill()
    await release_prepare(e2e, http, sdk_transfer_id, forward=False)
    e2e.stack.worker = e2e.stack.worker_process().start()

    reconciling = await wait_until(http, e2e, transfer["transferId"], {"RECONCILING", *FINAL})
    assert reconciling["currentState"] == "RECONCILING"
    assert await balances(e2e, http, account_id) == ("1000.00", "10.00")  # no proof yet: still held
    done = await wait_until(http, e2e, transfer["transferId"], FINAL)
    assert (done["currentState"], done["lastError"]["code"]) == ("ABORTED", "transfer_not_found")
    assert done["lastError"]["fspiopErrorCode"] == "3208"
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")
    assert await switch_saw(e2e, http, sdk_transfer_id) is None
    assert await switch_queries_of_unknown(e2e, http, sdk_transfer_id) >= 2  # asked until past the deadline


async def test_worker_killed_while_the_sdk_is_stopped_moves_money_at_most_once(
    e2e: E2E, http: httpx.AsyncClient
) -> None:
    """SIGSTOP the SDK, accept the quote (the acceptQuote PUT waits in the stopped SDK's socket), SIGKILL our
    worker, start another, SIGCONT the SDK. Whether the SDK then still sends the prepare is its business: at most
    one prepare, and the outcome matches what the switch saw."""
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)
    headers = money_movement_headers()
    transfer = await send(e2e, http, transfer_body(payer=payer, amount="10", **MANUAL), headers=headers)
    quoted = await decide(e2e, http, transfer["transferId"], {"acceptParty": True})
    assert quoted["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
    workflow_id = outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])

    os.kill(e2e.mojaloop.sdk.pid, signal.SIGSTOP)
    try:
        await decide(e2e, http, transfer["transferId"], {"acceptQuote": True}, respond_async=True)
        started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        await wait_for_pending_activity(e2e.stack.client, workflow_id, "send_quote_acceptance", started)
        _replace_worker(e2e)
    finally:
        os.kill(e2e.mojaloop.sdk.pid, signal.SIGCONT)

    done = await wait_until(http, e2e, transfer["transferId"], FINAL, timeout_s=90)
    switch = await switch_saw(e2e, http, transfer["sdkTransferId"])
    if switch is None:  # the prepare never left: nothing moved, and we waited for proof before releasing
        assert (done["currentState"], done["lastError"]["code"]) == ("ABORTED", "transfer_not_found")
        assert await balances(e2e, http, account_id) == ("1000.00", "0.00")
    else:
        assert (switch["prepares"], switch["state"]) == (1, "COMMITTED")
        assert done["currentState"] == "COMPLETED", done.get("lastError")
        assert await balances(e2e, http, account_id) == ("990.00", "0.00")
