"""A worker backlog, then a crash mid-PUT, then a prepare the switch learns of late (issue 7, section 2).

The worker dies while the CBS takes its time over the hold (in the workflow task that also looked up the party and
got the quote: their re-runs answer what the first runs got, sent once); the worker that takes over is behind (it runs
workflow tasks, not activities: tests/support/workers.py), so the money step is scheduled and nobody starts it.
A full worker comes back only after the prepare's expiry and the grace have passed, counted from the
scheduling; it sends the PUT and is SIGKILLed before the answer; the switch first answers 3208 (not found),
then the late prepare commits. A deadline counted from the scheduling (`transferSentAt`) releases the hold on
that first 3208 and ends ABORTED while the money moved; the deadline must start when the prepare could have
left (the activity's start, or the failure's observation).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from activities.payment_manager import SwitchState
from tests.conftest import Stack
from tests.support.history import activity_runs, run_ids
from tests.support.transfers import (
    account,
    new_payer,
    set_fault,
    sim_requests,
    sim_transfer,
    start_async,
    transfer_body,
    wait_for_state,
)
from tests.support.workers import backlogged_worker, settings_of, wait_for_pending_activity

FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}
HOLD_DELAY_S = 5.0  # long enough to kill the worker while the hold is in flight


async def _calls(http: httpx.AsyncClient, stack: Stack) -> dict[str, int]:
    response = await http.get(f"{stack.cbs_url}/_sim/calls")
    response.raise_for_status()
    return dict(response.json())


async def _wait_for_prepare(http: httpx.AsyncClient, stack: Stack, sdk_transfer_id: str) -> None:
    deadline = time.monotonic() + 30
    while (await sim_transfer(http, stack.sdk_url, sdk_transfer_id))["prepareCount"] < 1:
        assert time.monotonic() < deadline, "the money step never reached the SDK"
        await asyncio.sleep(0.05)


async def _switch_answers(stack: Stack, workflow_id: str) -> list[tuple[datetime, str]]:
    """Every answer the reconciliation got from the switch, across the workflow's runs: (when, state)."""
    answers: list[tuple[datetime, str]] = []
    for run_id in await run_ids(stack.client, workflow_id):
        for run in await activity_runs(stack.client, workflow_id, "get_switch_state", SwitchState, run_id=run_id):
            if run.closed_at is not None and run.result is not None:
                answers.append((run.closed_at, run.result.state))
    return answers


async def test_a_late_prepare_after_a_backlog_and_a_crash_is_committed_not_released(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    expiry = timedelta(seconds=float(stack.env["MOJAFLOW_TRANSFER_EXPIRY_S"]))
    grace = timedelta(seconds=float(stack.env["MOJAFLOW_RECONCILE_GRACE_S"]))
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    # The SDK holds the PUT for a minute (the worker dies meanwhile); the prepare reaches the switch 2 s after
    # it was sent, and the switch's first answer is 3208 whatever its timing.
    await set_fault(
        http, stack.sdk_url, body["homeTransactionId"], moneyStepDelayS=60, prepareArrivesAfterS=2, notFoundAnswers=1
    )
    # The CBS takes its time over the hold: the worker dies meanwhile, with the workflow task that waits for it.
    slow_hold = {"mode": "slow", "delayS": HOLD_DELAY_S, "times": 1}
    (await http.put(f"{stack.cbs_url}/_sim/faults/hold", json=slow_hold)).raise_for_status()
    calls_before = await _calls(http, stack)

    try:
        transfer, workflow_id = await start_async(http, stack.api_url, body)
        await wait_for_state(http, stack.api_url, transfer["transferId"], {"HOLDING_FUNDS"})
        stack.worker.kill()
        # The worker that takes over is behind: it runs the workflow on (the hold again, idempotent at the CBS,
        # then TRANSFERRING) and schedules the money step, but starts no activity.
        async with backlogged_worker(stack.client, settings_of(stack.env)):
            await wait_for_pending_activity(stack.client, workflow_id, "send_quote_acceptance", timeout_s=60)
        scheduled: dict[str, Any] = await wait_for_state(http, stack.api_url, transfer["transferId"], {"TRANSFERRING"})
        sdk_transfer_id = scheduled["sdkTransferId"]
        assert (await sim_transfer(http, stack.sdk_url, sdk_transfer_id))["prepareCount"] == 0  # not sent yet
        assert (await account(http, stack.cbs_url, account_id))["held"] == "10.00"

        # The backlog lasts past the prepare's expiry plus the grace, counted from the scheduling.
        old_deadline = datetime.fromisoformat(scheduled["timestamps"]["transferSentAt"]) + expiry + grace
        await asyncio.sleep(max(0.0, (old_deadline - datetime.now(UTC)).total_seconds()) + 1)

        stack.worker = stack.worker_process().start()
        await _wait_for_prepare(http, stack, sdk_transfer_id)  # the PUT is at the SDK, the answer not yet back
        stack.worker.kill()
        stack.worker = stack.worker_process().start()
    finally:
        await http.delete(f"{stack.cbs_url}/_sim/faults/hold")
        if not stack.worker.running:
            stack.worker = stack.worker_process().start()

    done = await wait_for_state(http, stack.api_url, transfer["transferId"], FINAL, timeout_s=60)

    answers = await _switch_answers(stack, workflow_id)
    assert answers, "the transfer was never reconciled"
    first_at, first = answers[0]
    assert first == "NOT_FOUND" and first_at > old_deadline, answers  # the 3208 a deadline from scheduling trusts
    assert (done["currentState"], done.get("lastError")) == ("COMPLETED", None), done
    assert answers[-1][1] == "COMMITTED"
    switch = await sim_transfer(http, stack.sdk_url, sdk_transfer_id)
    assert (switch["prepareCount"], switch["switchState"]) == (1, "COMMITTED")
    # The worker died in the workflow task that had also looked up the party and asked for the quote (local
    # activities): the next worker ran them again and got their kept answers, without sending either twice.
    sent = await sim_requests(http, stack.sdk_url, body["homeTransactionId"])
    assert (sent["partyLookups"], sent["partyAcceptances"]) == (1, 1)
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
    calls = await _calls(http, stack)
    assert (
        calls["commit_hold"] - calls_before["commit_hold"],
        calls["release_hold"] - calls_before["release_hold"],
    ) == (
        1,
        0,
    )
