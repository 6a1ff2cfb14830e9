"""A week-long CBS outage after the switch committed (issue 7, section 4), under time-skipping.

The money left: the payer must be debited, however long the CBS is down. Meanwhile the transfer says SETTLING,
its workflow keeps running (never Failed, never Terminated) and its history does not grow with the outage:
a week of retries every five minutes (OUTAGE_RETRY) is ~2000 attempts, which the server keeps out of the
history, where a local activity retried for a week would heartbeat its workflow task (a few events every 8 s,
~200,000 in a week) past Temporal's limit of 51,200. When the CBS is back, the hold is committed once.

The workflow runs in-process on its own worker with the real activities against the session's simulators (the
CBS simulator's fault switch makes it answer 503 to every commit). Its first minute of retries runs locally,
in real time (about 30 s here); the week after that is skipped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from mojaflow.models import OutboundTransferInput, TransferPolicy, TransferRequest, TransferView
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.history import history_length
from tests.support.transfers import account, new_payer, sim_transfer, transfer_body
from worker import build_worker, worker_resources
from workflows.outbound_transfer import OutboundTransferWorkflow

DEFAULTS = Settings()  # the shipped defaults, not the test stack's shortened ones
OUTAGE = timedelta(days=7)
HISTORY_BOUND = 1000  # events; Temporal's limit is 51,200


def _policy() -> TransferPolicy:
    return TransferPolicy(
        auto_accept_party=True,
        auto_accept_quote=True,
        acceptance_timeout_s=DEFAULTS.acceptance_timeout_s,
        transfer_expiry_s=DEFAULTS.transfer_expiry_s,
        reconcile_grace_s=DEFAULTS.reconcile_grace_s,
        reconcile_max_interval_s=DEFAULTS.reconcile_max_interval_s,
        reconcile_checks_per_run=DEFAULTS.reconcile_checks_per_run,
    )


@pytest.fixture
async def cbs_commits_down(stack: Stack, http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every `POST /holds/{id}/commit` answers 503 until the test clears the fault (cleared on exit in any case)."""
    (await http.put(f"{stack.cbs_url}/_sim/faults/commit_hold", json={"mode": "down"})).raise_for_status()
    try:
        yield
    finally:
        (await http.delete(f"{stack.cbs_url}/_sim/faults/commit_hold")).raise_for_status()


async def _calls(http: httpx.AsyncClient, stack: Stack) -> dict[str, int]:
    response = await http.get(f"{stack.cbs_url}/_sim/calls")
    response.raise_for_status()
    return dict(response.json())


async def _wait_for_view(
    handle: WorkflowHandle[OutboundTransferWorkflow, TransferView], state: str, timeout_s: float
) -> TransferView:
    """Poll the workflow's `view` query (real time, nothing skipped meanwhile) until it shows `state`."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = await handle.query(OutboundTransferWorkflow.view)
        if view.current_state == state:
            return view
        assert time.monotonic() < deadline, f"the transfer stayed {view.current_state}, never {state}"
        await asyncio.sleep(0.2)


async def test_a_week_of_cbs_outage_keeps_the_transfer_settling_then_debits_the_payer_once(
    skipping_temporal: WorkflowEnvironment,
    stack: Stack,
    http: httpx.AsyncClient,
    tmp_path: Path,
    cbs_commits_down: None,
) -> None:
    env, client = skipping_temporal, skipping_temporal.client
    settings = Settings(
        task_queue=f"skipping-{uuid.uuid4()}",
        sdk_url=stack.sdk_url,
        cbs_url=stack.cbs_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'mojaflow.db'}",
    )
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = OutboundTransferInput(
        transfer_id=str(uuid.uuid4()),
        client_key="bank1",
        request=TransferRequest.model_validate(transfer_body(payer=payer, amount="10")),
        policy=_policy(),
        received_at=datetime.now(UTC),
    )
    calls_before = await _calls(http, stack)

    async with worker_resources(settings) as activities, build_worker(client, settings, activities):
        handle = await client.start_workflow(
            OutboundTransferWorkflow.run,
            transfer,
            id=f"outbound-bank1-{uuid.uuid4().hex}",
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        # The local minute of retries runs in real time (~30 s of back-off), then the transfer shows SETTLING.
        settling = await _wait_for_view(handle, "SETTLING", timeout_s=120)
        events_when_settling = await history_length(client, handle.id)

        await env.sleep(OUTAGE)

        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        (commit,) = description.raw_description.pending_activities
        assert commit.activity_type.name == "commit_hold"
        assert commit.state != PendingActivityState.PENDING_ACTIVITY_STATE_UNSPECIFIED
        assert commit.attempt > OUTAGE / timedelta(minutes=5) * 0.9  # it kept trying all week
        assert (await handle.query(OutboundTransferWorkflow.view)).current_state == "SETTLING"
        events_after_a_week = await history_length(client, handle.id)
        assert events_after_a_week < HISTORY_BOUND
        assert events_after_a_week == events_when_settling  # the retries left no trace in the history
        balances = await account(http, stack.cbs_url, account_id)
        assert (balances["balance"], balances["held"]) == ("1000.00", "10.00")  # held, not yet debited

        calls_while_down = await _calls(http, stack)
        (await http.delete(f"{stack.cbs_url}/_sim/faults/commit_hold")).raise_for_status()  # the CBS is back
        view = await handle.result()

    assert view.current_state == "COMPLETED" and view.last_error is None, view
    assert settling.timestamps.finished_at is None and view.timestamps.finished_at is not None
    assert view.timestamps.transfer_sent_at is not None
    assert view.timestamps.finished_at - view.timestamps.transfer_sent_at >= OUTAGE
    assert (await sim_transfer(http, stack.sdk_url, view.sdk_transfer_id or ""))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
    calls = await _calls(http, stack)
    assert calls["commit_hold"] - calls_while_down["commit_hold"] == 1  # one commit once the CBS answered
    assert calls["release_hold"] == calls_before["release_hold"]
