"""Each auth scheme of a subscription end to end: the webhook receiver simulator checks the API-key headers, the
Basic credentials, or the bearer token against the OAuth2 token server simulator (introspection), and answers 401
when they are wrong. Our worker runs in process under the time-skipping test server.

Tokens: cached per subscription across deliveries and worker processes (a second `worker_resources` has an empty
memory and finds the token in our database), fetched again once within the attempt after a 401; client auth by
HTTP Basic, or form fields when the token server refuses Basic.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.webhook_models import DeliveryStatus
from mojaflow.webhook_subscription_models import SubscriptionUpdate
from mojaflow.webhook_subscriptions import update_subscription
from tests.support import secret_scan
from tests.support.webhook_delivery import (
    Receiver,
    deliver,
    delivery_detail,
    new_delivery,
    receiver_admin,
    start_options,
    subscribe,
    wait_until,
)
from tests.support.webhook_delivery import database_fixture as database_fixture  # a fixture
from tests.support.webhook_delivery import settings_fixture as settings_fixture  # a fixture
from tests.support.webhook_peers import Peer, oauth_token_server, webhook_receiver
from worker import build_webhook_worker, worker_resources
from workflows.webhook_delivery import WebhookDeliveryWorkflow


def _secret(label: str) -> str:
    value = secrets.token_urlsafe(24)
    secret_scan.remember_secret(label, value)
    return value


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    receiver = webhook_receiver(tmp_path_factory.mktemp("receiver"))
    tokens = oauth_token_server(tmp_path_factory.mktemp("token-server"))
    with receiver.process.start(), tokens.process.start():
        yield receiver, tokens


@pytest.fixture
async def receiver(peers: tuple[Peer, Peer]) -> AsyncIterator[Receiver]:
    async with receiver_admin(peers[0].url) as receiver:
        yield receiver


@pytest.fixture
async def token_server(peers: tuple[Peer, Peer]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=peers[1].url, timeout=10) as http:
        (await http.put("/_sim/config", json={})).raise_for_status()
        (await http.delete("/_sim/tokens")).raise_for_status()
        yield http


def remember_tokens(requests: list[dict[str, Any]]) -> None:
    for request in requests:
        authorization = request["headers"].get("authorization", "")
        if authorization.startswith("Bearer "):
            secret_scan.remember_secret("an access token of the token server", authorization.removeprefix("Bearer "))


async def test_api_key_headers_are_sent_as_configured_and_read_at_each_attempt(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    headers = {"X-Api-Key": _secret("an API-key header"), "X-Tenant-Key": _secret("an API-key header")}
    await receiver.require({"type": "api_keys", "headers": headers})
    wrong = {"X-Api-Key": _secret("a wrong API-key header"), "X-Tenant-Key": headers["X-Tenant-Key"]}
    subscription = await subscribe(database, f"{receiver.url}/hooks", {"type": "api_keys", "headers": wrong})
    delivery = await new_delivery(database, subscription.subscription_id)

    async with worker_resources(settings) as objects, build_webhook_worker(skipping_temporal.client, settings, objects):
        handle = await skipping_temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def refused() -> bool:
            return [r["status"] for r in await receiver.events(delivery.event_id)] == [401]

        await wait_until(refused, "the first attempt refused with 401")
        patch = SubscriptionUpdate.model_validate({"auth": {"type": "api_keys", "headers": headers}})
        assert await update_subscription(database, subscription.subscription_id, patch) is not None
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 2)
    requests = await receiver.events(delivery.event_id)
    assert [(r["status"], r["authOk"]) for r in requests] == [(401, False), (200, True)]
    assert requests[1]["headers"]["x-api-key"] == headers["X-Api-Key"]


async def test_basic_credentials(
    skipping_temporal: WorkflowEnvironment, settings: Settings, database: Database, receiver: Receiver
) -> None:
    password = _secret("a Basic password")
    await receiver.require({"type": "basic", "username": "hooks-bank1", "password": password})
    auth = {"type": "basic", "username": "hooks-bank1", "password": password}
    subscription = await subscribe(database, f"{receiver.url}/hooks", auth)
    delivery = await new_delivery(database, subscription.subscription_id)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 1)
    [request] = await receiver.events(delivery.event_id)
    assert (request["authOk"], request["headers"]["authorization"].split(" ")[0]) == (True, "Basic")


def _base(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


async def _oauth_subscription(
    database: Database, receiver: Receiver, token_server: httpx.AsyncClient
) -> tuple[str, str]:
    client_id, client_secret = f"bank1-{uuid.uuid4().hex[:8]}", _secret("an OAuth2 client secret")
    registered = {"clientId": client_id, "clientSecret": client_secret, "scopes": ["webhooks"]}
    (await token_server.post("/_sim/clients", json=registered)).raise_for_status()
    await receiver.require({"type": "oauth2", "tokenServerUrl": _base(token_server), "scope": "webhooks"})
    auth = {
        "type": "oauth2_client_credentials",
        "clientId": client_id,
        "clientSecret": client_secret,
        "tokenUrl": f"{_base(token_server)}/token",
        "scope": "webhooks",
    }
    subscription = await subscribe(database, f"{receiver.url}/hooks", auth)
    return subscription.subscription_id, client_id


async def _issued(token_server: httpx.AsyncClient) -> dict[str, Any]:
    tokens: dict[str, Any] = (await token_server.get("/_sim/tokens")).json()
    return tokens


async def test_a_bearer_token_is_cached_across_deliveries_and_processes_and_fetched_again_after_a_401(
    skipping_temporal: WorkflowEnvironment,
    settings: Settings,
    database: Database,
    receiver: Receiver,
    token_server: httpx.AsyncClient,
) -> None:
    subscription_id, client_id = await _oauth_subscription(database, receiver, token_server)
    first, second = [await new_delivery(database, subscription_id) for _ in range(2)]

    for delivery in (first, second):  # each on a worker of its own: the second finds the token in our database
        outcome = await deliver(skipping_temporal, settings, delivery)
        assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert (await _issued(token_server))["issued"] == 1
    assert [r["clientAuth"] for r in (await _issued(token_server))["requests"]] == ["basic"]

    (await token_server.post("/_sim/revoke", json={"clientId": client_id})).raise_for_status()
    third = await new_delivery(database, subscription_id)
    outcome = await deliver(skipping_temporal, settings, third)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 1)
    requests = await receiver.events(third.event_id)
    assert [(r["status"], r["authOk"]) for r in requests] == [(401, False), (200, True)]  # within one attempt
    assert requests[0]["headers"]["authorization"] != requests[1]["headers"]["authorization"]
    assert (await _issued(token_server))["issued"] == 2
    detail = await delivery_detail(database, third.delivery_id)
    assert [(a.attempt, a.status_code) for a in detail.attempt_log] == [(1, 200)]
    for delivery in (first, second, third):
        remember_tokens(await receiver.events(delivery.event_id))


async def test_client_credentials_go_in_the_form_when_the_token_server_refuses_basic(
    skipping_temporal: WorkflowEnvironment,
    settings: Settings,
    database: Database,
    receiver: Receiver,
    token_server: httpx.AsyncClient,
) -> None:
    (await token_server.put("/_sim/config", json={"refuseBasic": True})).raise_for_status()
    subscription_id, _ = await _oauth_subscription(database, receiver, token_server)
    delivery = await new_delivery(database, subscription_id)

    outcome = await deliver(skipping_temporal, settings, delivery)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 1)
    requests = (await _issued(token_server))["requests"]
    assert [(r["clientAuth"], r["status"]) for r in requests] == [("basic", 401), ("form", 200)]
    remember_tokens(await receiver.events(delivery.event_id))


async def test_a_token_server_that_fails_fails_the_attempt_which_is_made_again(
    skipping_temporal: WorkflowEnvironment,
    settings: Settings,
    database: Database,
    receiver: Receiver,
    token_server: httpx.AsyncClient,
) -> None:
    subscription_id, _ = await _oauth_subscription(database, receiver, token_server)
    delivery = await new_delivery(database, subscription_id)
    (await token_server.put("/_sim/config", json={"tokenStatus": 503})).raise_for_status()

    async with worker_resources(settings) as objects, build_webhook_worker(skipping_temporal.client, settings, objects):
        handle = await skipping_temporal.client.start_workflow(
            WebhookDeliveryWorkflow.run, delivery.run, **start_options(settings, delivery)
        )

        async def first_attempt_recorded() -> bool:
            return (await delivery_detail(database, delivery.delivery_id)).attempts == 1

        await wait_until(first_attempt_recorded, "the first attempt recorded")
        (await token_server.put("/_sim/config", json={})).raise_for_status()
        outcome = (await handle.result()).of(delivery.delivery_id)

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert len(await receiver.events(delivery.event_id)) == 1  # nothing was posted without a token
    detail = await delivery_detail(database, delivery.delivery_id)
    assert [(a.status_code, a.error_class) for a in detail.attempt_log] == [(None, "oauth_token_refused"), (200, None)]
    remember_tokens(await receiver.events(delivery.event_id))
