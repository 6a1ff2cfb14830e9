"""Long outages under time-skipping (issue 7, section 4): a week of CBS after the switch committed, and a day
of our database at the final save.

The money left: the payer must be debited, however long the CBS is down. Meanwhile the transfer says SETTLING,
its workflow keeps running (never Failed, never Terminated) and its history does not grow with the outage:
a week of retries every five minutes (OUTAGE_RETRY) is ~2000 attempts, which the server keeps out of the
history, where a local activity retried for a week would heartbeat its workflow task (a few events every 8 s,
~200,000 in a week) past Temporal's limit of 51,200. When the CBS is back, the hold is committed once. The same
holds for our own database (a real PostgreSQL, stopped and started again): the final state waits to be saved.

The workflow runs in-process on its own worker with the real activities against the session's simulators (the
CBS simulator's fault switch makes it answer 503 to every commit). Each outage's first minute of retries runs
locally, in real time (about 30 s for the CBS, 50 s for the database); the rest is skipped (a week of ~2000
attempts in about 20 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.models import OutboundTransferInput, TransferPolicy, TransferRequest, TransferView
from mojaflow.settings import Settings
from mojaflow.temporal import MOJAFLOW_STATE
from tests.conftest import Stack
from tests.support.history import history_length
from tests.support.postgres import PostgresServer, find_pg_bin
from tests.support.transfers import account, new_payer, sim_transfer, transfer_body
from tests.support.workers import wait_for_pending_activity
from worker import build_worker, worker_resources
from workflows.outbound_transfer import OutboundTransferWorkflow

DEFAULTS = Settings()  # the shipped defaults, not the test stack's shortened ones
OUTAGE = timedelta(days=7)
# Our database's outage: a day is ~290 attempts, enough to see that the history does not grow with it (the
# week is shown on the CBS, through the same retry path); its first local minute (11 saves) is real time.
DATABASE_OUTAGE = timedelta(days=1)
HISTORY_BOUND = 1000  # events; Temporal's limit is 51,200
COMMIT_DELAY_S = 3.0  # a slow commit at the CBS: the window in which the database goes down


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
        data_dir=tmp_path,  # its own database (SQLite) and keys
    )
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = OutboundTransferInput(
        transfer_id=str(uuid.uuid4()),
        client_key="bank1",
        order=TransferRequest.model_validate(transfer_body(payer=payer, amount="10")).order(),
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
        assert commit.attempt > OUTAGE / timedelta(minutes=5) * 0.9  # it kept trying all week
        assert (await handle.query(OutboundTransferWorkflow.view)).current_state == "SETTLING"
        assert description.typed_search_attributes.get(MOJAFLOW_STATE) == "SETTLING"  # the Web UI finds it
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


@asynccontextmanager
async def slow_commit(http: httpx.AsyncClient, stack: Stack) -> AsyncIterator[None]:
    """The CBS takes its time over the next commit (the window in which the database goes down)."""
    fault = {"mode": "slow", "delayS": COMMIT_DELAY_S, "times": 1}
    (await http.put(f"{stack.cbs_url}/_sim/faults/commit_hold", json=fault)).raise_for_status()
    try:
        yield
    finally:
        (await http.delete(f"{stack.cbs_url}/_sim/faults/commit_hold")).raise_for_status()


class _PausablePostgres(PostgresServer):
    """A throwaway PostgreSQL that can be taken down (`pg_ctl stop -m immediate`, as a crash) and brought back
    on the same data and port."""

    def pause(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"  # as start()
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-o", options, "-l", log, "-w", "start")


@pytest.fixture
def postgres() -> Iterator[_PausablePostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    server = _PausablePostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_day_without_our_database_at_the_final_save_keeps_the_workflow_running_then_saves_it(
    skipping_temporal: WorkflowEnvironment,
    stack: Stack,
    http: httpx.AsyncClient,
    tmp_path: Path,
    postgres: _PausablePostgres,
) -> None:
    env, client = skipping_temporal, skipping_temporal.client
    settings = Settings(
        task_queue=f"skipping-{uuid.uuid4()}",
        sdk_url=stack.sdk_url,
        cbs_url=stack.cbs_url,
        data_dir=tmp_path,  # its keys
        database_url=postgres.url,
    )
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = OutboundTransferInput(
        transfer_id=str(uuid.uuid4()),
        client_key="bank1",
        order=TransferRequest.model_validate(transfer_body(payer=payer, amount="10")).order(),
        policy=_policy(),
        received_at=datetime.now(UTC),
    )
    calls_before = await _calls(http, stack)

    async with (
        slow_commit(http, stack),
        worker_resources(settings) as activities,
        build_worker(client, settings, activities),
    ):
        handle = await client.start_workflow(
            OutboundTransferWorkflow.run,
            transfer,
            id=f"outbound-bank1-{uuid.uuid4().hex}",
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        deadline = time.monotonic() + 30
        while (await _calls(http, stack))["commit_hold"] == calls_before["commit_hold"]:
            assert time.monotonic() < deadline, "the commit never reached the CBS"
            await asyncio.sleep(0.05)
        postgres.pause()
        try:
            # The local minute of retries of the save runs in real time, then it waits as a normal activity.
            await wait_for_pending_activity(client, handle.id, "save_transfer", None, timeout_s=120)
            events_when_waiting = await history_length(client, handle.id)

            await env.sleep(DATABASE_OUTAGE)

            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
            (save,) = description.raw_description.pending_activities
            assert save.activity_type.name == "save_transfer"
            assert save.attempt > DATABASE_OUTAGE / timedelta(minutes=5) * 0.9  # it kept trying all day
            events_after_a_day = await history_length(client, handle.id)
            assert events_after_a_day < HISTORY_BOUND
            assert events_after_a_day == events_when_waiting
            # The money is settled; only our record of it waits (callers still see the last saved state).
            balances = await account(http, stack.cbs_url, account_id)
            assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
            assert (await handle.query(OutboundTransferWorkflow.view)).current_state == "TRANSFERRING"
            assert description.typed_search_attributes.get(MOJAFLOW_STATE) == "TRANSFERRING"  # so do searches
        finally:
            postgres.resume()
        view = await handle.result()

    assert view.current_state == "COMPLETED" and view.last_error is None, view
    database = Database(postgres.url, secrets=load_secrets_ring(settings))
    try:
        saved = await database.get_transfer(transfer.transfer_id)
    finally:
        await database.close()
    assert saved is not None and saved.current_state == "COMPLETED"
    calls = await _calls(http, stack)
    assert calls["commit_hold"] - calls_before["commit_hold"] == 1
    assert calls["release_hold"] == calls_before["release_hold"]
