"""What the delivery tests share: a database with subscriptions and deliveries in it, the receiver's admin API, and
starting `WebhookDeliveryWorkflow` the way the outbox does (tests/workflows/test_webhook_delivery*.py).

    settings = delivery_settings(tmp_path)
    database = await open_database(settings)
    subscription = await subscribe(database, receiver.url + "/hooks", {"type": "basic", ...})
    delivery = await new_delivery(database, subscription.subscription_id)   # the event and its PENDING delivery
    options = start_options(settings, delivery)
    outcome = await client.execute_workflow(WebhookDeliveryWorkflow.run, delivery.run, **options)
    summary = outcome.of(delivery.delivery_id)

The outbox of the transfers writes events and deliveries in the save's transaction; here `new_delivery` writes the
same rows through `mojaflow.webhook_deliveries`, so these tests need no transfer, marked dispatched: the test starts
the workflow, not the outbox's sweeper of a worker process.

The fixtures (`receiver_peer`, `receiver`, `settings`, `database`) are imported by the test modules that use them,
one line each (the redundant alias tells ruff the import is meant):
    from tests.support.webhook_delivery import database_fixture as database_fixture  # a fixture
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.models import Direction, TransferState
from mojaflow.settings import Settings
from mojaflow.webhook_deliveries import insert_delivery, insert_event
from mojaflow.webhook_delivery_queries import DeliveryDetail, get_delivery
from mojaflow.webhook_models import DeliveryItem, PaymentStatus, WebhookEvent, event_id
from mojaflow.webhook_subscription_models import SubscriptionCreate, SubscriptionCreated
from mojaflow.webhook_subscriptions import create_subscription
from tests.support import secret_scan
from tests.support.webhook_peers import Peer, webhook_receiver
from worker import build_webhook_worker, worker_resources
from workflows.webhook_delivery import DeliveryRun, DeliverySummary, WebhookDeliveryWorkflow

__all__ = [
    "NO_AUTH",
    "OneDelivery",
    "Receiver",
    "database_fixture",
    "deliver",
    "delivery_detail",
    "delivery_settings",
    "new_delivery",
    "open_database",
    "receiver_admin",
    "receiver_fixture",
    "receiver_peer_fixture",
    "settings_fixture",
    "start_options",
    "subscribe",
    "wait_until",
]

CLIENT_KEY = "bank1"
NO_AUTH = {"type": "api_keys", "headers": {"X-Receiver-Key": "not-checked-here"}}  # a receiver that checks none


def delivery_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """A database and task queues of this test's own; 127.0.0.1 allowed (the receiver); its own secrets ring."""
    key = os.urandom(32)
    secret_scan.remember_secret("a delivery test's secrets key", key)
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / f'mojaflow-{uuid.uuid4().hex[:8]}.db'}",
        "task_queue": f"transfers-{uuid.uuid4()}",
        "webhook_task_queue": f"webhooks-{uuid.uuid4()}",
        "webhook_allowed_hosts": ["127.0.0.1"],
        "secrets_keys": [SecretStr(f"t{uuid.uuid4().hex[:6]}:{base64.b64encode(key).decode()}")],
    }
    return Settings(**{**values, **overrides})


async def open_database(settings: Settings) -> Database:
    database = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))
    await database.create_schema()
    return database


async def subscribe(
    database: Database, url: str, auth: dict[str, Any], *, client_key: str = CLIENT_KEY
) -> SubscriptionCreated:
    """A subscription as the API stores it; its secrets (and its signing secret) join the session's secret scan."""
    request = SubscriptionCreate.model_validate(
        {"url": url, "eventTypes": ["moneymovementservices.payment.status_updated"], "auth": auth}
    )
    created = await create_subscription(database, client_key, request)
    secret_scan.remember_secret("a subscription's signing secret", created.signing_secret)
    for name in ("password", "clientSecret"):
        if name in auth:
            secret_scan.remember_secret(f"a subscription's {name}", auth[name])
    for value in auth.get("headers", {}).values():
        secret_scan.remember_secret("a subscription's API-key header value", value)
    return created


@dataclass(frozen=True)
class OneDelivery:
    """A delivery written as the outbox writes it, and `run`: the input of a workflow that delivers it alone."""

    delivery_id: str
    event_id: str
    transfer_id: str
    subscription_id: str
    run: DeliveryRun


async def new_delivery(
    database: Database,
    subscription_id: str,
    *,
    client_key: str = CLIENT_KEY,
    transfer_id: str | None = None,
    sequence: int = 1,
    attempt_interval_s: float | None = None,
    final: bool = True,
) -> OneDelivery:
    """An event of a transfer's state change and its PENDING delivery to the subscription, as the outbox writes
    them; with the input of a workflow that delivers it. `final`: the workflow closes once it is settled (else it
    waits for the transfer's next event)."""
    transfer_id = transfer_id or str(uuid.uuid4())
    event = WebhookEvent(
        id=event_id(transfer_id, sequence),
        data=PaymentStatus(
            transfer_id=transfer_id,
            home_transaction_id=f"home-{uuid.uuid4().hex[:8]}",
            direction=Direction.OUTBOUND,
            previous_state=TransferState.RECEIVED if sequence > 1 else None,
            current_state=TransferState.COMPLETED if sequence > 1 else TransferState.RECEIVED,
            sequence=sequence,
            amount="10.50",
            currency="USD",
            occurred_at=datetime.now(UTC),
        ),
    )
    async with database.engine.begin() as connection:
        await insert_event(
            connection, event, client_key=client_key, product="retail_payments", payment_channel="online"
        )
        delivery = await insert_delivery(
            connection, event_id=event.id, subscription_id=subscription_id, transfer_id=transfer_id,
            client_key=client_key, dispatched=True,  # started by the test: no sweeper starts it
        )  # fmt: skip
    extra = {} if attempt_interval_s is None else {"attempt_interval_s": attempt_interval_s}
    item = DeliveryItem(
        delivery_id=delivery, event_id=event.id, transfer_id=transfer_id, sequence=sequence, final=final
    )
    run = DeliveryRun(subscription_id=subscription_id, deliveries=[item], **extra)
    return OneDelivery(delivery, event.id, transfer_id, subscription_id, run)


def start_options(settings: Settings, delivery: OneDelivery | DeliveryRun) -> dict[str, Any]:
    """As the outbox starts a delivery workflow: its id from its batch's first delivery, the webhooks' task
    queue."""
    run = delivery.run if isinstance(delivery, OneDelivery) else delivery
    return {
        "id": run.workflow_id,
        "task_queue": settings.webhook_task_queue,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    }


async def deliver(env: WorkflowEnvironment, settings: Settings, delivery: OneDelivery) -> DeliverySummary:
    """Run the delivery to its end on a webhook worker of its own (a fresh process's memory: no token cached but in
    our database); under time-skipping, time skips while its result is awaited. Its summary in the outcome."""
    async with worker_resources(settings) as objects, build_webhook_worker(env.client, settings, objects):
        outcome = await env.client.execute_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )
    return outcome.of(delivery.delivery_id)


async def delivery_detail(database: Database, delivery_id: str) -> DeliveryDetail:
    """The delivery with its attempts, as `GET /webhooks/deliveries/{id}` answers it."""
    stored = await get_delivery(database, delivery_id, detail=True)
    assert stored is not None and isinstance(stored.view, DeliveryDetail)
    return stored.view


async def wait_until(check: Any, what: str, timeout_s: float = 30) -> Any:
    """Poll the async `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


class Receiver:
    """The webhook receiver simulator's admin API (`/_sim`): what it got, how it answers, what auth it checks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.AsyncClient(base_url=url, timeout=10)

    async def close(self) -> None:
        await self._http.aclose()

    async def reset(self) -> None:
        for path in ("/_sim/faults", "/_sim/auth"):
            (await self._http.delete(path)).raise_for_status()

    async def events(self, event: str) -> list[dict[str, Any]]:
        """Every request that carried this event, in arrival order."""
        response = await self._http.get("/_sim/events", params={"eventId": event, "limit": 1000})
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def requests_to(self, path: str) -> list[dict[str, Any]]:
        response = await self._http.get("/_sim/events", params={"limit": 1000})
        response.raise_for_status()
        return [event for event in response.json()["events"] if event["path"] == path]

    async def fault(self, **spec: Any) -> None:
        (await self._http.put("/_sim/faults", json=spec)).raise_for_status()

    async def require(self, auth: dict[str, Any]) -> None:
        (await self._http.put("/_sim/auth", json=auth)).raise_for_status()

    async def release(self) -> None:
        (await self._http.post("/_sim/release")).raise_for_status()


@asynccontextmanager
async def receiver_admin(url: str) -> AsyncIterator[Receiver]:
    """The receiver's admin API, its faults and auth requirements reset before and after."""
    receiver = Receiver(url)
    await receiver.reset()
    yield receiver
    await receiver.reset()
    await receiver.close()


@pytest.fixture(scope="module", name="receiver_peer")
def receiver_peer_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """The webhook receiver simulator, one per test module."""
    peer = webhook_receiver(tmp_path_factory.mktemp("receiver"))
    with peer.process:
        yield peer


@pytest.fixture(name="receiver")
async def receiver_fixture(receiver_peer: Peer) -> AsyncIterator[Receiver]:
    async with receiver_admin(receiver_peer.url) as receiver:
        yield receiver


@pytest.fixture(name="settings")
def settings_fixture(tmp_path: Path) -> Settings:
    return delivery_settings(tmp_path)


@pytest.fixture(name="database")
async def database_fixture(settings: Settings) -> AsyncIterator[Database]:
    database = await open_database(settings)
    yield database
    await database.close()
