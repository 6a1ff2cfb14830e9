"""Every path of `WebhookDeliveryWorkflow` replayed through Temporal's sandbox: production runs it unsandboxed
(worker.py says why), so a non-deterministic call or a changed command order must fail here.

The histories are made in this test, under the time-skipping server with our worker and the receiver simulator:
delivered at once, delivered after failures, FAILED after 73 attempts, a manual retry, cancelled, nothing to
deliver. (tests/workflows/test_replay.py replays the transfers' histories; the deliveries run on their own queue.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from mojaflow.codec import data_converter
from mojaflow.webhook_models import DeliveryStatus
from mojaflow.webhook_subscriptions import delete_subscription
from tests.support.webhook_delivery import (
    NO_AUTH,
    Receiver,
    delivery_detail,
    delivery_settings,
    new_delivery,
    open_database,
    start_options,
    subscribe,
    wait_until,
)
from tests.support.webhook_delivery import receiver_peer_fixture as receiver_peer_fixture  # a fixture
from tests.support.webhook_peers import Peer
from worker import WORKFLOWS, build_webhook_worker, worker_resources, workflow_runner
from workflows.webhook_delivery import WebhookDeliveryWorkflow


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def test_every_delivery_path_replays_in_the_sandbox(
    skipping_temporal: WorkflowEnvironment, receiver_peer: Peer, tmp_path: Path, payload_key: bytes
) -> None:
    client = skipping_temporal.client
    settings = delivery_settings(tmp_path)
    database = await open_database(settings)
    receiver = Receiver(receiver_peer.url)
    await receiver.reset()
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    outcomes: dict[str, DeliveryStatus] = {}
    ids: list[str] = []

    async with worker_resources(settings) as objects, build_webhook_worker(client, settings, objects):

        async def run(label: str, **fault: object) -> None:
            delivery = await new_delivery(database, subscription.subscription_id)
            await receiver.reset()
            if fault:
                await receiver.fault(**fault)
            outcome = await client.execute_workflow(
                WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
            )
            outcomes[label] = outcome.status
            ids.append(start_options(settings, delivery)["id"])

        await run("at once")
        await run("after failures", status=500, times=3)
        await run("failed", status=500)

        manual = await new_delivery(database, subscription.subscription_id)
        await receiver.fault(status=500, times=1)
        handle = await client.start_workflow(WebhookDeliveryWorkflow.run, manual.run, **start_options(settings, manual))

        async def first_attempt_recorded() -> bool:
            return (await delivery_detail(database, manual.delivery_id)).attempts == 1

        await wait_until(first_attempt_recorded, "the first attempt recorded")
        await handle.execute_update(WebhookDeliveryWorkflow.retry_now, manual.delivery_id)
        outcomes["manual"] = (await handle.result()).status
        ids.append(handle.id)

        cancelled = await new_delivery(database, subscription.subscription_id)
        await receiver.fault(status=500)
        handle = await client.start_workflow(
            WebhookDeliveryWorkflow.run, cancelled.run, **start_options(settings, cancelled)
        )

        async def waiting() -> bool:
            return (await delivery_detail(database, cancelled.delivery_id)).attempts == 1

        await wait_until(waiting, "the first attempt recorded")
        await handle.cancel()
        outcomes["cancelled"] = (await handle.result()).status
        ids.append(handle.id)

        gone = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
        nothing = await new_delivery(database, gone.subscription_id)
        await delete_subscription(database, gone.subscription_id)
        outcome = await client.execute_workflow(
            WebhookDeliveryWorkflow.run, nothing.run, **start_options(settings, nothing)
        )
        outcomes["nothing to deliver"] = outcome.status
        ids.append(start_options(settings, nothing)["id"])

    assert outcomes == {
        "at once": DeliveryStatus.DELIVERED,
        "after failures": DeliveryStatus.DELIVERED,
        "failed": DeliveryStatus.FAILED,
        "manual": DeliveryStatus.DELIVERED,
        "cancelled": DeliveryStatus.CANCELLED,
        "nothing to deliver": DeliveryStatus.CANCELLED,
    }
    histories: list[WorkflowHistory] = [await client.get_workflow_handle(i).fetch_history() for i in ids]
    replayer = Replayer(
        workflows=WORKFLOWS, workflow_runner=workflow_runner(sandboxed=True), data_converter=data_converter(payload_key)
    )
    results = await replayer.replay_workflows(_each(histories), raise_on_replay_failure=False)
    failures = {run_id: repr(failure) for run_id, failure in results.replay_failures.items()}
    assert failures == {}
    assert sum(len(history.events) for history in histories) > 6 * 8  # six whole histories, the 73 attempts too
    await receiver.reset()
    await receiver.close()
    await database.close()
