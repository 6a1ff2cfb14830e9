"""The not-found deadline with the shipped defaults (transfer expiry 60 s, grace 60 s), under time-skipping: the
twin of tests/workflows/test_outbound_backlog_crash.py (issue 7, section 2).

The switch never learns of the prepare: every answer is 3208. The hold may be released only once the prepare's
expiry *and* the grace have passed since the prepare could last have left, not after the grace alone:
* the money step's answer never comes back (the SDK holds the PUT past our HTTP timeout): nothing tells the
  prepare's expiration, so it counts from the failure's observation (no prepare can leave after it);
* the SDK answers 504 with its prepare, whose `expiration` (the SDK's EXPIRY_SECONDS, 60 s by default) is
  preferred: it counts from the step's start (the prepare left during the step).
Times are the workflow's own (`finishedAt`) and the server's (the activity's events), all virtual.

What only the real stack can show: the test server locks time skipping from an activity's scheduling to its
end, so a backlog (scheduled, not started) lasts real seconds here, never minutes; the anchor on the step's
start rather than its scheduling is proven by the backlog test on the real stack.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from activities.payment_manager import SwitchState
from mojaflow.models import OutboundTransferInput, TransferPolicy, TransferRequest
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.history import activity_runs
from tests.support.transfers import account, new_payer, set_fault, sim_transfer, transfer_body
from worker import build_worker, worker_resources
from workflows.outbound_transfer import OutboundTransferWorkflow

DEFAULTS = Settings()  # the shipped defaults, not the test stack's shortened ones
ANSWER_TIMEOUT_S = 2.0  # our HTTP timeout towards the SDK, shortened: the wait for the lost answer is real time


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


@pytest.mark.parametrize(
    ("fault", "counted_from"),
    [
        ({"moneyStepAnswer": "hang"}, "observation"),
        ({"moneyStepAnswer": "timeout", "moneyStepDelayS": 0.5, "prepareExpiresInS": 60}, "start"),
    ],
    ids=["answer_lost", "sdk_504_with_its_prepare"],
)
async def test_a_not_found_transfer_is_released_only_after_expiry_and_grace(
    skipping_temporal: WorkflowEnvironment,
    stack: Stack,
    http: httpx.AsyncClient,
    tmp_path: Path,
    fault: dict[str, Any],
    counted_from: str,
) -> None:
    client: Client = skipping_temporal.client
    settings = Settings(
        task_queue=f"skipping-{uuid.uuid4()}",
        sdk_url=stack.sdk_url,
        cbs_url=stack.cbs_url,
        data_dir=tmp_path,  # its own database (SQLite) and keys
        sdk_timeout_s=ANSWER_TIMEOUT_S,
    )
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], prepareLost=True, **fault)
    transfer = OutboundTransferInput(
        transfer_id=str(uuid.uuid4()),
        client_key="bank1",
        order=TransferRequest.model_validate(body).order(),
        policy=_policy(),
        received_at=datetime.now(UTC),
    )
    workflow_id = f"outbound-bank1-{uuid.uuid4().hex}"

    async with worker_resources(settings) as activities, build_worker(client, settings, activities):
        view = await client.execute_workflow(
            OutboundTransferWorkflow.run,
            transfer,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )

    assert (view.current_state, view.last_error and view.last_error.code) == ("ABORTED", "transfer_not_found")
    (money_step,) = await activity_runs(client, workflow_id, "send_quote_acceptance")
    assert money_step.started_at is not None and money_step.closed_at is not None
    assert view.timestamps.transfer_sent_at is not None and view.timestamps.finished_at is not None
    answers = await activity_runs(client, workflow_id, "get_switch_state", SwitchState)
    assert answers and {answer.result.state for answer in answers} == {"NOT_FOUND"}, answers

    # Expiry and grace count from the last moment the prepare could have left.
    could_have_left_until = money_step.closed_at if counted_from == "observation" else money_step.started_at
    expiry, grace = timedelta(seconds=DEFAULTS.transfer_expiry_s), timedelta(seconds=DEFAULTS.reconcile_grace_s)
    released_after = view.timestamps.finished_at - could_have_left_until
    assert released_after >= expiry + grace, released_after
    # ... and then at the next question (the pauses grow to at most reconcile_max_interval_s), not much later.
    assert released_after < expiry + grace + timedelta(seconds=DEFAULTS.reconcile_max_interval_s + 10), released_after

    assert (await sim_transfer(http, stack.sdk_url, view.sdk_transfer_id or ""))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
