"""`retry_now`, the update behind `POST /webhooks/deliveries/{id}/retry` for a running delivery: an attempt at
once, recorded as manual, that does not shorten the 73.

Update-driven flows run on the session's Temporal dev server (time-skipping skips time only while a workflow
result is awaited); the one that needs the whole 72 hours awaits the result, on the time-skipping server.
"""

from __future__ import annotations

from temporalio.client import WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.webhook_deliveries import MANUAL_ATTEMPT_BASE
from mojaflow.webhook_models import DeliveryStatus
from tests.support.webhook_delivery import (
    NO_AUTH,
    Receiver,
    delivery_detail,
    new_delivery,
    start_options,
    subscribe,
    wait_until,
)
from tests.support.webhook_delivery import database_fixture as database_fixture  # a fixture
from tests.support.webhook_delivery import receiver_fixture as receiver_fixture  # a fixture
from tests.support.webhook_delivery import receiver_peer_fixture as receiver_peer_fixture  # a fixture
from tests.support.webhook_delivery import settings_fixture as settings_fixture  # a fixture
from worker import build_webhook_worker, worker_resources
from workflows.webhook_delivery import WebhookDeliveryWorkflow


async def test_a_manual_retry_attempts_at_once_without_counting_toward_the_73(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=500, times=1)

    async with worker_resources(settings) as objects, build_webhook_worker(temporal.client, settings, objects):
        handle = await temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def waiting_an_hour() -> bool:
            return (await delivery_detail(database, delivery.delivery_id)).attempts == 1

        await wait_until(waiting_an_hour, "the first attempt recorded")
        manual = await handle.execute_update(WebhookDeliveryWorkflow.retry_now, delivery.delivery_id)
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert (manual.attempt, manual.status) == (MANUAL_ATTEMPT_BASE + 1, DeliveryStatus.DELIVERED)
    assert manual.result is not None and manual.result.status_code == 200
    assert (outcome.status, outcome.attempts, outcome.manual_attempts) == (DeliveryStatus.DELIVERED, 1, 1)
    requests = await receiver.events(delivery.event_id)
    assert [r["status"] for r in requests] == [500, 200]
    assert {r["headers"]["webhook-id"] for r in requests} == {delivery.event_id}
    detail = await delivery_detail(database, delivery.delivery_id)
    assert [(a.attempt, a.manual, a.status_code) for a in detail.attempt_log] == [
        (1, False, 500), (MANUAL_ATTEMPT_BASE + 1, True, 200),
    ]  # fmt: skip
    assert (detail.status, detail.attempts) == (DeliveryStatus.DELIVERED, 1)


async def test_a_retry_asked_during_an_attempt_is_made_after_it(
    temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=500, hold=True, times=1)

    async with worker_resources(settings) as objects, build_webhook_worker(temporal.client, settings, objects):
        handle = await temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def held() -> bool:
            return [r["outcome"] for r in await receiver.events(delivery.event_id)] == ["pending"]

        await wait_until(held, "the first POST held open")
        update = await handle.start_update(
            WebhookDeliveryWorkflow.retry_now, delivery.delivery_id, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        await receiver.release()
        manual = await update.result()
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert (manual.attempt, manual.status) == (MANUAL_ATTEMPT_BASE + 1, DeliveryStatus.DELIVERED)
    assert (outcome.status, outcome.attempts, outcome.manual_attempts) == (DeliveryStatus.DELIVERED, 1, 1)
    assert [r["status"] for r in await receiver.events(delivery.event_id)] == [500, 200]


async def test_a_failed_manual_retry_leaves_the_73_hourly_attempts_as_they_were(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=500)
    client = skipping_temporal.client

    async with worker_resources(settings) as objects, build_webhook_worker(client, settings, objects):
        handle = await client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def first_attempt_recorded() -> bool:  # time stands still until the result is awaited
            return (await delivery_detail(database, delivery.delivery_id)).attempts == 1

        await wait_until(first_attempt_recorded, "the first attempt recorded")
        before = await delivery_detail(database, delivery.delivery_id)
        manual = await handle.execute_update(
            WebhookDeliveryWorkflow.retry_now, delivery.delivery_id
        )  # needs no time to pass
        after = await delivery_detail(database, delivery.delivery_id)
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert (manual.status, manual.result and manual.result.status_code) == (DeliveryStatus.DELIVERING, 500)
    assert (after.attempts, after.next_attempt_at) == (1, before.next_attempt_at)  # the schedule did not move
    assert (outcome.status, outcome.attempts, outcome.manual_attempts) == (DeliveryStatus.FAILED, 73, 1)
    assert len(await receiver.events(delivery.event_id)) == 73 + 1
