"""A worker process SIGKILLed under webhook deliveries: nothing is lost, every event is redelivered with its id.

Real processes on 127.0.0.1: a worker and an API of their own (a sibling of the session stack with its own data
dir and deliveries' task queue) on the session's Temporal dev server, and the webhook receiver simulator. Mid
attempt: the receiver holds the request open (its hold switch) until the kill, so the kill lands while the POST is
in flight (an event, not a sleep). Between attempts: the kill lands once every delivery's history shows its timer
started. These deliveries re-post every few seconds (`DeliveryRun.attempt_interval_s`), since a dev server cannot
skip the hour; the hourly schedule itself is tests/workflows/test_webhook_delivery.py's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.webhook_models import DeliveryStatus
from tests.conftest import Stack
from tests.support.webhook_delivery import (
    Receiver,
    delivery_detail,
    new_delivery,
    open_database,
    start_options,
    subscribe,
    wait_until,
)
from tests.support.webhook_peers import webhook_receiver
from tests.support.workers import settings_of
from workflows.webhook_delivery import DeliveryOutcome, DeliveryRun

NO_AUTH = {"type": "api_keys", "headers": {"X-Receiver-Key": "not-checked-here"}}


@dataclass
class Crash:
    stack: Stack
    settings: Settings
    database: Database
    receiver: Receiver

    def restart_worker(self) -> None:
        """SIGKILL the worker process (a crash), then start a fresh one on the same queues."""
        self.stack.worker.kill()
        self.stack.worker = self.stack.worker_process().start()

    async def start(self, delivery: DeliveryRun) -> WorkflowHandle[object, DeliveryOutcome]:
        return await self.stack.client.start_workflow(
            "WebhookDeliveryWorkflow",
            delivery.run,
            result_type=DeliveryOutcome,
            **start_options(self.settings, delivery),
        )


@pytest.fixture(scope="module")
def crash_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    base = tmp_path_factory.mktemp("webhook-crash")
    receiver = webhook_receiver(base / "receiver")
    own = {
        "MOJAFLOW_DATA_DIR": str(base / "data"),
        "MOJAFLOW_WEBHOOK_TASK_QUEUE": f"tests-hooks-{uuid.uuid4()}",
        "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    with receiver.process, stack.sibling(base, **own) as sibling:
        try:
            yield sibling, receiver.url
        finally:
            sibling.worker.stop()  # the one the last restart started (the sibling stops its first only)


@pytest.fixture
async def crash(crash_stack: tuple[Stack, str]) -> AsyncIterator[Crash]:
    stack, receiver_url = crash_stack
    settings = settings_of(stack.env)
    database = await open_database(settings)
    receiver = Receiver(receiver_url)
    await receiver.reset()
    try:
        yield Crash(stack, settings, database, receiver)
    finally:
        await receiver.reset()
        await receiver.close()
        await database.close()


async def test_a_worker_killed_while_an_attempt_is_in_flight_redelivers_the_same_event(crash: Crash) -> None:
    subscription = await subscribe(crash.database, f"{crash.receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(crash.database, subscription.subscription_id)
    await crash.receiver.fault(status=200, hold=True, times=1)
    handle = await crash.start(delivery)

    async def held() -> bool:
        return [r["outcome"] for r in await crash.receiver.events(delivery.event_id)] == ["pending"]

    await wait_until(held, "the first POST held open at the receiver")
    crash.restart_worker()
    outcome = (await asyncio.wait_for(handle.result(), timeout=90)).of(delivery.delivery_id)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 1)
    requests = await crash.receiver.events(delivery.event_id)
    assert [(r["outcome"], r["status"]) for r in requests][1:] == [("answered", 200)]
    assert requests[0]["outcome"] == "client_gone"  # the killed worker's POST, cut off mid-flight
    assert {r["headers"]["webhook-id"] for r in requests} == {delivery.event_id}
    assert requests[0]["rawBody"] == requests[1]["rawBody"]
    detail = await delivery_detail(crash.database, delivery.delivery_id)
    assert [(a.attempt, a.status_code) for a in detail.attempt_log] == [(1, 200)]  # the same attempt, run again


async def _timer_started(handle: WorkflowHandle[object, DeliveryOutcome]) -> bool:
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            return True
    return False


async def test_a_worker_killed_while_deliveries_wait_for_their_next_attempt_loses_none(crash: Crash) -> None:
    subscription = await subscribe(crash.database, f"{crash.receiver.url}/hooks", NO_AUTH)
    deliveries = [
        await new_delivery(crash.database, subscription.subscription_id, attempt_interval_s=4) for _ in range(5)
    ]
    await crash.receiver.fault(status=503, times=len(deliveries))
    handles = [await crash.start(delivery) for delivery in deliveries]

    async def all_waiting() -> bool:  # every first attempt failed and each workflow waits on its durable timer
        return all([await _timer_started(handle) for handle in handles])

    await wait_until(all_waiting, "every delivery waiting for its second attempt")
    crash.restart_worker()
    outcomes = await asyncio.wait_for(asyncio.gather(*(handle.result() for handle in handles)), timeout=90)

    assert [(o.deliveries[0].status, o.deliveries[0].attempts) for o in outcomes] == [
        (DeliveryStatus.DELIVERED, 2)
    ] * len(deliveries)
    for delivery in deliveries:
        requests = await crash.receiver.events(delivery.event_id)
        assert [r["status"] for r in requests] == [503, 200]
        assert {r["headers"]["webhook-id"] for r in requests} == {delivery.event_id}
