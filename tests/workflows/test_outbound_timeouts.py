"""The default deadlines, minutes long, under Temporal's time-skipping test server: the acceptance timeout
(300 s) and the reconciliation grace after a prepare the switch never saw (60 s).

The workflow runs in-process on its own worker with the real activities against the session's simulators and
a database of its own. Times are asserted on what the workflow recorded (virtual time), not on the test's clock.
The time-skipping server is the shared `skipping_temporal` fixture: one per test (skipped time stays skipped,
and the simulators' quotes expire on the real clock), checked for Failed workflows when it stops.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from mojaflow.models import OutboundTransferInput, TransferPolicy, TransferRequest
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.transfers import account, new_payer, set_fault, sim_transfer, transfer_body
from worker import build_worker, worker_resources
from workflows.outbound_transfer import OutboundTransferWorkflow

DEFAULTS = Settings()  # the shipped defaults, not the test stack's shortened ones


async def _run(client: Client, stack: Stack, tmp_path: Path, body: dict, *, manual: bool) -> dict:
    settings = Settings(
        task_queue=f"skipping-{uuid.uuid4()}",
        sdk_url=stack.sdk_url,
        cbs_url=stack.cbs_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'mojaflow.db'}",
    )
    policy = TransferPolicy(
        auto_accept_party=not manual,
        auto_accept_quote=not manual,
        acceptance_timeout_s=DEFAULTS.acceptance_timeout_s,
        transfer_expiry_s=DEFAULTS.transfer_expiry_s,
        reconcile_grace_s=DEFAULTS.reconcile_grace_s,
        reconcile_max_interval_s=DEFAULTS.reconcile_max_interval_s,
        reconcile_checks_per_run=DEFAULTS.reconcile_checks_per_run,
    )
    transfer = OutboundTransferInput(
        transfer_id=str(uuid.uuid4()),
        client_key="bank1",
        order=TransferRequest.model_validate(body).order(),
        policy=policy,
        received_at=datetime.now(UTC),
    )
    async with worker_resources(settings) as activities, build_worker(client, settings, activities):
        view = await client.execute_workflow(
            OutboundTransferWorkflow.run,
            transfer,
            id=f"outbound-bank1-{uuid.uuid4().hex}",
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    return view.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_no_decision_in_300_seconds_aborts(
    skipping_temporal: WorkflowEnvironment, stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)

    view = await _run(skipping_temporal.client, stack, tmp_path, transfer_body(payer=payer), manual=True)

    assert (view["currentState"], view["lastError"]["code"]) == ("ABORTED", "acceptance_timeout")
    waited = datetime.fromisoformat(view["timestamps"]["finishedAt"]) - datetime.fromisoformat(
        view["timestamps"]["partyResolvedAt"]
    )
    assert 300 <= waited.total_seconds() < 330
    assert (await account(http, stack.cbs_url, account_id))["held"] == "0.00"


async def test_a_lost_prepare_is_released_only_after_expiry_and_a_minute_of_grace(
    skipping_temporal: WorkflowEnvironment, stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], prepareLost=True, moneyStepDelayS=0.1)

    view = await _run(skipping_temporal.client, stack, tmp_path, body, manual=False)

    assert (view["currentState"], view["lastError"]["code"]) == ("ABORTED", "transfer_not_found")
    waited = datetime.fromisoformat(view["timestamps"]["finishedAt"]) - datetime.fromisoformat(
        view["timestamps"]["transferSentAt"]
    )
    assert waited.total_seconds() >= DEFAULTS.reconcile_grace_s  # the prepare's own expiry comes on top
    assert (await sim_transfer(http, stack.sdk_url, view["sdkTransferId"]))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
