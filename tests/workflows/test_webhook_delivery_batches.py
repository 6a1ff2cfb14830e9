"""One `WebhookDeliveryWorkflow` per (transfer, subscription): a transfer's events reach a subscriber through one
run, in order, however they were handed over (signal-with-start, as the outbox's dispatcher does it), and a
delivery handed over twice is posted once. And a batch of attempts that cannot run at all never fails the
workflow: the deliveries keep their hourly schedule and end FAILED.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.temporal import WEBHOOK_EVENT_IDS, WEBHOOK_STATUS
from mojaflow.webhook_dispatch import dispatch_batch
from mojaflow.webhook_models import ATTEMPTS_PER_CYCLE, DeliveryBatch, DeliveryStatus, delivery_workflow_id
from tests.support.webhook_delivery import (
    NO_AUTH,
    Receiver,
    deliver,
    delivery_detail,
    delivery_settings,
    new_delivery,
    subscribe,
    wait_until,
)
from tests.support.webhook_delivery import database_fixture as database_fixture  # a fixture
from tests.support.webhook_delivery import receiver_fixture as receiver_fixture  # a fixture
from tests.support.webhook_delivery import receiver_peer_fixture as receiver_peer_fixture  # a fixture
from tests.support.webhook_delivery import settings_fixture as settings_fixture  # a fixture
from worker import build_webhook_worker, worker_resources
from workflows.webhook_delivery import WebhookDeliveryWorkflow


async def test_a_transfers_events_reach_a_subscriber_through_one_run_in_order_each_once(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    path = f"/hooks-{uuid.uuid4().hex[:8]}"
    subscription = await subscribe(database, f"{receiver.url}{path}", NO_AUTH)
    sid = subscription.subscription_id
    first = await new_delivery(database, sid, sequence=1, final=False)
    transfer = first.transfer_id
    rest = [await new_delivery(database, sid, transfer_id=transfer, sequence=n, final=n == 4) for n in (2, 3, 4)]
    items = [one.run.deliveries[0] for one in [first, *rest]]

    async def hand_over(*numbers: int) -> None:  # as the outbox's dispatcher does
        batch = DeliveryBatch(transfer_id=transfer, subscription_id=sid, deliveries=[items[n - 1] for n in numbers])
        await dispatch_batch(temporal.client, batch, task_queue=settings.webhook_task_queue, timeout_s=10)

    async def received() -> list[str]:
        return [request["eventId"] for request in await receiver.requests_to(path)]

    async with worker_resources(settings) as objects, build_webhook_worker(temporal.client, settings, objects):
        await hand_over(1, 2)
        await wait_until(lambda: _has(received, 2), "the first two events")
        await hand_over(2, 3, 1)  # two of them again (a sweeper racing the save's dispatch), and the next
        await wait_until(lambda: _has(received, 3), "the third event")
        await hand_over(4)
        handle = temporal.client.get_workflow_handle_for(
            WebhookDeliveryWorkflow.run, delivery_workflow_id(transfer, sid)
        )
        outcome = await handle.result()

    assert await received() == [item.event_id for item in items]  # in order, each once
    assert outcome.status == DeliveryStatus.DELIVERED
    assert [(each.delivery_id, each.attempts) for each in outcome.deliveries] == [(i.delivery_id, 1) for i in items]
    runs = [run async for run in temporal.client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert [run.status for run in runs] == [WorkflowExecutionStatus.COMPLETED]  # one run took them all
    described = await handle.describe()
    assert list(described.typed_search_attributes.get(WEBHOOK_EVENT_IDS) or []) == [i.event_id for i in items]
    assert described.typed_search_attributes.get(WEBHOOK_STATUS) == DeliveryStatus.DELIVERED.value
    for item in items:
        detail = await delivery_detail(database, item.delivery_id)
        assert (detail.status, len(detail.attempt_log)) == (DeliveryStatus.DELIVERED, 1)


async def _has(received: object, count: int) -> bool:
    return len(await received()) >= count  # type: ignore[operator]


async def test_attempts_that_cannot_run_never_fail_the_workflow(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The subscription's secrets are sealed under a key this worker's ring does not hold (rotated away): every
    batch of attempts fails before any POST. The delivery keeps its 73 hourly tries and ends FAILED, normally."""
    path = f"/hooks-{uuid.uuid4().hex[:8]}"
    subscription = await subscribe(database, f"{receiver.url}{path}", NO_AUTH)
    first = await new_delivery(database, subscription.subscription_id, sequence=1, final=False)
    second = await new_delivery(
        database, subscription.subscription_id, transfer_id=first.transfer_id, sequence=2, final=True
    )
    run = first.run.model_copy(update={"deliveries": [*first.run.deliveries, *second.run.deliveries]})
    other_ring = delivery_settings(tmp_path, database_url=settings.database_url,
                                   webhook_task_queue=settings.webhook_task_queue)  # fmt: skip
    both = first.__class__(first.delivery_id, first.event_id, first.transfer_id, first.subscription_id, run)

    summary = await deliver(skipping_temporal, other_ring, both)

    assert (summary.status, summary.attempts, summary.error_class) == (
        DeliveryStatus.FAILED, ATTEMPTS_PER_CYCLE, "attempt_error",
    )  # fmt: skip
    assert await receiver.requests_to(path) == []
    for one in (first, second):
        assert (await delivery_detail(database, one.delivery_id)).status == DeliveryStatus.FAILED
