"""A webhook delivery end to end under Temporal's time-skipping test server: our worker in process (the real
workflow and activities, the SSRF-guarded client), the webhook receiver simulator as a real HTTP server on
127.0.0.1. Attempts are counted at the receiver, not in our records; their times are read from the `timestamp`
header each POST carries (the workflow's time), so hourly marks are checked on what the receiver got.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.webhook_models import ATTEMPTS_PER_CYCLE, DeliveryStatus
from mojaflow.webhook_subscriptions import delete_subscription, rotate_signing_secret
from tests.support.process import free_port
from tests.support.webhook_delivery import (
    NO_AUTH,
    Receiver,
    deliver,
    delivery_detail,
    delivery_settings,
    new_delivery,
    open_database,
    start_options,
    subscribe,
    wait_until,
)
from tests.support.webhook_delivery import database_fixture as database_fixture  # a fixture
from tests.support.webhook_delivery import receiver_fixture as receiver_fixture  # a fixture
from tests.support.webhook_delivery import receiver_peer_fixture as receiver_peer_fixture  # a fixture
from tests.support.webhook_delivery import settings_fixture as settings_fixture  # a fixture
from tests.support.webhook_peers import webhook_receiver
from worker import build_webhook_worker, worker_resources
from workflows.webhook_delivery import WebhookDeliveryWorkflow

HOUR = timedelta(hours=1)


def sent_at(request: dict) -> datetime:
    """The attempt's time as the POST says it (`timestamp`: the workflow's time of the attempt)."""
    value = request["headers"]["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", value), value
    return datetime.fromisoformat(value)


def assert_hourly(requests: list[dict]) -> None:
    """Attempt k at the first + (k-1) h: anchored to the first, within a second (the workflow task's own time)."""
    first = sent_at(requests[0])
    for number, request in enumerate(requests, start=1):
        drift = sent_at(request) - (first + (number - 1) * HOUR)
        assert timedelta(0) <= drift < timedelta(seconds=1), (number, drift)


async def test_a_200_is_one_signed_attempt_with_the_money_movement_headers(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts, outcome.status_code) == (DeliveryStatus.DELIVERED, 1, 200)
    [request] = await receiver.events(delivery.event_id)
    headers = request["headers"]
    assert request["path"] == "/hooks"
    assert request["body"] == {
        "id": delivery.event_id,
        "event_type": "moneymovementservices.payment.status_updated",
        "data": request["body"]["data"],
    }
    assert request["body"]["data"]["transferId"] == delivery.transfer_id
    assert (headers["client_key"], headers["product"], headers["payment_channel"]) == (
        "bank1", "retail_payments", "online",
    )  # fmt: skip
    assert headers["idempotent_request_key"] == headers["webhook-id"] == delivery.event_id
    sent_at(request)
    verified = Webhook(subscription.signing_secret).verify(request["rawBody"], headers)
    assert verified["id"] == delivery.event_id
    detail = await delivery_detail(database, delivery.delivery_id)
    assert (detail.status, detail.attempts, len(detail.attempt_log)) == (DeliveryStatus.DELIVERED, 1, 1)
    assert (detail.attempt_log[0].status_code, detail.attempt_log[0].manual) == (200, False)


async def test_during_a_secret_rotation_each_signature_verifies(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    rotated = await rotate_signing_secret(database, subscription.subscription_id)
    assert rotated is not None
    delivery = await new_delivery(database, subscription.subscription_id)

    await deliver(skipping_temporal, settings, delivery)

    [request] = await receiver.events(delivery.event_id)
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (subscription.signing_secret, rotated.signing_secret):
        Webhook(secret).verify(request["rawBody"], request["headers"])


@pytest.mark.parametrize("status", [201, 204, 301, 401, 500, 502])
async def test_anything_but_200_is_posted_again_an_hour_later_with_the_same_id(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver, status: int
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=status, times=1, location="/elsewhere")

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 2)
    requests = await receiver.events(delivery.event_id)
    assert [request["status"] for request in requests] == [status, 200]
    assert {request["headers"]["webhook-id"] for request in requests} == {delivery.event_id}
    assert_hourly(requests)
    assert await receiver.requests_to("/elsewhere") == []  # a redirect is never followed
    detail = await delivery_detail(database, delivery.delivery_id)
    assert [(a.attempt, a.status_code, a.error_class) for a in detail.attempt_log] == [
        (1, status, None),
        (2, 200, None),
    ]


async def test_a_timeout_is_posted_again(
    skipping_temporal: WorkflowEnvironment, tmp_path: Path, receiver: Receiver
) -> None:
    settings = delivery_settings(tmp_path, webhook_timeout_s=0.5)
    database = await open_database(settings)
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=200, delayS=3, times=1)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 2)
    requests = await receiver.events(delivery.event_id)
    assert len(requests) == 2 and requests[1]["status"] == 200
    detail = await delivery_detail(database, delivery.delivery_id)
    assert [(a.status_code, a.error_class) for a in detail.attempt_log] == [(None, "timeout"), (200, None)]
    await database.close()


async def test_a_refused_connection_is_posted_again_once_the_receiver_is_up(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, tmp_path: Path
) -> None:
    port = free_port()  # nobody listens there yet
    subscription = await subscribe(database, f"http://127.0.0.1:{port}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    late = webhook_receiver(tmp_path / "late-receiver", port=port)

    async with worker_resources(settings) as objects, build_webhook_worker(skipping_temporal.client, settings, objects):
        handle = await skipping_temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def first_attempt_recorded() -> bool:  # time stands still until the result is awaited
            return (await delivery_detail(database, delivery.delivery_id)).attempts == 1

        await wait_until(first_attempt_recorded, "the first attempt recorded")
        with late.process.start():
            outcome = (await handle.result()).of(delivery.delivery_id)
            received = await Receiver(late.url).events(delivery.event_id)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert len(received) == 1
    detail = await delivery_detail(database, delivery.delivery_id)
    assert [(a.status_code, a.error_class) for a in detail.attempt_log] == [
        (None, "connection_refused"), (200, None),
    ]  # fmt: skip


async def test_a_receiver_that_recovers_gets_it_on_attempt_k_with_the_same_id(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=503, times=6)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 7)
    requests = await receiver.events(delivery.event_id)
    assert [request["status"] for request in requests] == [503] * 6 + [200]
    assert {request["headers"]["webhook-id"] for request in requests} == {delivery.event_id}
    assert {request["rawBody"] for request in requests} == {requests[0]["rawBody"]}
    assert_hourly(requests)


async def test_a_receiver_that_always_fails_gets_73_attempts_over_72_hours_then_the_delivery_failed(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=500)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts, outcome.status_code) == (DeliveryStatus.FAILED, 73, 500)
    requests = await receiver.events(delivery.event_id)
    assert len(requests) == ATTEMPTS_PER_CYCLE == 73
    assert {request["headers"]["webhook-id"] for request in requests} == {delivery.event_id}
    assert_hourly(requests)
    assert sent_at(requests[-1]) - sent_at(requests[0]) < 72 * HOUR + timedelta(seconds=1)
    detail = await delivery_detail(database, delivery.delivery_id)
    assert (detail.status, detail.attempts, len(detail.attempt_log), detail.next_attempt_at) == (
        DeliveryStatus.FAILED, 73, 73, None,
    )  # fmt: skip


async def test_a_cancelled_delivery_stops_and_says_so(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await receiver.fault(status=500)

    async with worker_resources(settings) as objects, build_webhook_worker(skipping_temporal.client, settings, objects):
        handle = await skipping_temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def first_attempt_made() -> bool:
            return len(await receiver.events(delivery.event_id)) == 1

        await wait_until(first_attempt_made, "the first attempt")
        await handle.cancel()
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert outcome.status == DeliveryStatus.CANCELLED
    assert len(await receiver.events(delivery.event_id)) == 1
    assert (await delivery_detail(database, delivery.delivery_id)).status == DeliveryStatus.CANCELLED


async def test_nothing_is_posted_for_a_deleted_subscription(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    subscription = await subscribe(database, f"{receiver.url}/hooks", NO_AUTH)
    delivery = await new_delivery(database, subscription.subscription_id)
    await delete_subscription(database, subscription.subscription_id)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.CANCELLED, 0)
    assert await receiver.events(delivery.event_id) == []
    assert (await delivery_detail(database, delivery.delivery_id)).status == DeliveryStatus.CANCELLED


async def test_an_attempt_keeps_1_kb_of_the_answer_and_none_of_our_secrets(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database
) -> None:
    """A receiver that echoes our request head back, at length: the record keeps 1 KB of it, secrets masked."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        body = head * (1 + 4096 // len(head))
        writer.write(b"HTTP/1.1 500 Echo\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    password = secrets.token_urlsafe(18)
    auth = {"type": "basic", "username": "echo", "password": password}
    subscription = await subscribe(database, f"http://127.0.0.1:{port}/hooks", auth)
    delivery = await new_delivery(database, subscription.subscription_id)

    async with (
        server,
        worker_resources(settings) as objects,
        build_webhook_worker(skipping_temporal.client, settings, objects),
    ):
        handle = await skipping_temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def first_attempt_recorded() -> bool:
            return (await delivery_detail(database, delivery.delivery_id)).attempts == 1

        await wait_until(first_attempt_recorded, "the first attempt recorded")
        await handle.cancel()
        await handle.result()

    [attempt] = (await delivery_detail(database, delivery.delivery_id)).attempt_log
    basic = base64.b64encode(f"echo:{password}".encode()).decode()
    assert attempt.status_code == 500 and attempt.response_excerpt is not None
    assert 900 < len(attempt.response_excerpt) <= 1024  # the first 1 KB of 4 KB (a masked secret is shorter)
    assert attempt.response_excerpt.startswith("POST /hooks HTTP/1.1")
    assert "authorization: Basic ***" in attempt.response_excerpt
    assert password not in attempt.response_excerpt and basic not in attempt.response_excerpt
