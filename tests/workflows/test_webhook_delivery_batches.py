"""One `WebhookDeliveryWorkflow` per batch: the deliveries to one subscriber that a dispatcher hands over at once,
of any transfers. They reach the subscriber through one run, each transfer's in order and different transfers'
side by side, each once however often they were handed over (signal-with-start, as the outbox's dispatcher and its
sweeper do it). A run started before batches (one transfer's deliveries) still takes its transfer's later events.
And a batch of attempts that cannot run at all never fails the workflow: the deliveries keep their hourly schedule
and end FAILED.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.temporal import WEBHOOK_EVENT_IDS, WEBHOOK_STATUS, WEBHOOK_SUBSCRIPTION_ID, WEBHOOK_TRANSFER_IDS
from mojaflow.webhook_dispatch import batches, dispatch_batch
from mojaflow.webhook_models import ATTEMPTS_PER_CYCLE, DeliveryBatch, DeliveryItem, DeliveryStatus
from tests.support.webhook_delivery import (
    NO_AUTH,
    OneDelivery,
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


async def _transfer(database: Database, sid: str, count: int) -> list[OneDelivery]:
    """A transfer's first `count` state changes, each a delivery to `sid`, as the outbox writes them."""
    first = await new_delivery(database, sid, sequence=1, final=count == 1)
    rest = [await new_delivery(database, sid, transfer_id=first.transfer_id, sequence=n, final=n == count)
            for n in range(2, count + 1)]  # fmt: skip
    return [first, *rest]


def _item(one: OneDelivery) -> DeliveryItem:
    return one.run.deliveries[0]


async def test_a_batch_of_two_transfers_reaches_a_subscriber_through_one_run_each_event_once_in_order(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    path = f"/hooks-{uuid.uuid4().hex[:8]}"
    sid = (await subscribe(database, f"{receiver.url}{path}", NO_AUTH)).subscription_id
    one, other = await _transfer(database, sid, 3), await _transfer(database, sid, 2)
    handed = [(sid, _item(each)) for each in (other[1], one[2], one[0], other[0], one[1])]  # in no order
    (batch,) = batches(handed)

    async def hand_over(deliveries: DeliveryBatch) -> None:  # as the outbox's dispatcher does
        await dispatch_batch(temporal.client, deliveries, task_queue=settings.webhook_task_queue, timeout_s=10)

    async with worker_resources(settings) as objects, build_webhook_worker(temporal.client, settings, objects):
        await hand_over(batch)
        handle = temporal.client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, batch.workflow_id)
        outcome = await handle.result()
        described = await handle.describe()
        # handed over again once it has closed (a sweeper after a crash): a new run, which posts nothing again
        await hand_over(batch.model_copy(update={"deliveries": batch.deliveries[:2]}))
        runs = await wait_until(lambda: _closed_runs(temporal, handle.id, 2), "the second run to close")

    received = [request["eventId"] for request in await receiver.requests_to(path)]
    assert sorted(received) == sorted(each.event_id for each in (*one, *other))  # each once
    for transfer in (one, other):
        assert [event for event in received if event in {each.event_id for each in transfer}] == [
            each.event_id for each in transfer
        ]  # a transfer's events in its order
    assert outcome.status == DeliveryStatus.DELIVERED
    assert sorted((each.delivery_id, each.attempts) for each in outcome.deliveries) == sorted(
        (each.delivery_id, 1) for each in (*one, *other)
    )
    assert [run.status for run in runs] == [WorkflowExecutionStatus.COMPLETED] * 2
    assert handle.id == f"webhook-{batch.deliveries[0].event_id}-{sid}-1"
    found = described.typed_search_attributes
    assert sorted(found.get(WEBHOOK_TRANSFER_IDS) or []) == sorted({one[0].transfer_id, other[0].transfer_id})
    assert sorted(found.get(WEBHOOK_EVENT_IDS) or []) == sorted(each.event_id for each in (*one, *other))
    assert (found.get(WEBHOOK_SUBSCRIPTION_ID), found.get(WEBHOOK_STATUS)) == (sid, DeliveryStatus.DELIVERED.value)
    by_transfer = f"WorkflowType = 'WebhookDeliveryWorkflow' AND WebhookTransferIds = '{other[0].transfer_id}'"
    assert {run.id async for run in temporal.client.list_workflows(by_transfer)} == {handle.id}
    for each in (*one, *other):
        detail = await delivery_detail(database, each.delivery_id)
        assert (detail.status, len(detail.attempt_log), detail.workflow_id) == (
            DeliveryStatus.DELIVERED, 1, handle.id,
        )  # fmt: skip


async def test_different_transfers_of_a_batch_are_posted_side_by_side(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    """The receiver holds the first two requests open until released: both can be in flight only if the two
    transfers are posted side by side; the second event of a transfer waits for its first."""
    path = f"/hooks-{uuid.uuid4().hex[:8]}"
    sid = (await subscribe(database, f"{receiver.url}{path}", NO_AUTH)).subscription_id
    one, other = await _transfer(database, sid, 2), await _transfer(database, sid, 1)
    (batch,) = batches((sid, _item(each)) for each in (*one, *other))
    await receiver.fault(status=200, hold=True, times=2)

    async with worker_resources(settings) as objects, build_webhook_worker(temporal.client, settings, objects):
        await dispatch_batch(temporal.client, batch, task_queue=settings.webhook_task_queue, timeout_s=10)
        held = await wait_until(lambda: _held_requests(receiver, path, 2), "two requests in flight at once")
        assert sorted(held) == sorted([one[0].event_id, other[0].event_id])
        await receiver.release()
        outcome = await temporal.client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, batch.workflow_id).result()

    received = [request["eventId"] for request in await receiver.requests_to(path)]
    assert received.index(one[0].event_id) < received.index(one[1].event_id)
    assert len(received) == 3
    assert outcome.status == DeliveryStatus.DELIVERED


async def _held_requests(receiver: Receiver, path: str, count: int) -> list[str] | None:
    requests = await receiver.requests_to(path)
    return [each["eventId"] for each in requests] if len(requests) >= count else None


async def _closed_runs(temporal: WorkflowEnvironment, workflow_id: str, count: int) -> list[object] | None:
    runs = [run async for run in temporal.client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    closed = [run for run in runs if run.status != WorkflowExecutionStatus.RUNNING]
    return closed if len(closed) >= count else None


async def test_a_run_started_before_batches_still_takes_its_transfers_later_events(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    """Such a run (its input names the transfer; its id is `webhook-{transferId}-{subscriptionId}`) waits for the
    transfer's later events, as it did, until the final one is settled."""
    path = f"/hooks-{uuid.uuid4().hex[:8]}"
    sid = (await subscribe(database, f"{receiver.url}{path}", NO_AUTH)).subscription_id
    deliveries = await _transfer(database, sid, 4)
    transfer = deliveries[0].transfer_id
    items = [_item(each).model_copy(update={"transfer_id": None}) for each in deliveries]

    async def hand_over(*numbers: int) -> None:
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
        handle = temporal.client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, f"webhook-{transfer}-{sid}")
        outcome = await handle.result()

    assert await received() == [item.event_id for item in items]  # in order, each once
    assert outcome.status == DeliveryStatus.DELIVERED
    assert [(each.delivery_id, each.attempts) for each in outcome.deliveries] == [(i.delivery_id, 1) for i in items]
    runs = [run async for run in temporal.client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert [run.status for run in runs] == [WorkflowExecutionStatus.COMPLETED]  # one run took them all
    described = await handle.describe()
    assert list(described.typed_search_attributes.get(WEBHOOK_EVENT_IDS) or []) == [i.event_id for i in items]
    assert described.typed_search_attributes.get(WEBHOOK_STATUS) == DeliveryStatus.DELIVERED.value


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
