"""The client API's webhook subscriptions and deliveries, over real HTTP against a real API process.

A second API and worker next to the session's stack (same database and Temporal, task queues of their own) with
MOJAFLOW_WEBHOOK_ALLOWED_HOSTS=127.0.0.1,localhost, as `make run` has it, so that a subscription may name a local
receiver. Requests carry real API keys (tests/support/auth.py): the `client_key` header picks a client's key, no
header the operator's.

The deliveries' routes are tested twice: over rows written here as the outbox and the delivery activity write them
(an event, a delivery per subscription, its attempts), to set up each status and filter exactly; and end to end, a
real transfer's events delivered to the webhook receiver simulator, retried by hand while it fails and again once
delivered.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.temporal import WEBHOOK_SUBSCRIPTION_ID, WEBHOOK_TRANSFER_IDS
from mojaflow.webhook_dispatch import dispatch_batch, mark_dispatched
from mojaflow.webhook_models import (
    EVENT_TYPE,
    DeliveryBatch,
    DeliveryItem,
    DeliveryStatus,
    batch_workflow_id,
    delivery_id,
    delivery_workflow_id,
    event_id,
)
from mojaflow.webhook_subscriptions import load_subscription_for_delivery
from mojaflow.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events
from tests.conftest import Stack
from tests.support.auth import keys_for
from tests.support.secret_scan import remember_secret
from tests.support.transfers import money_movement_headers, new_payer, transfer_body
from tests.support.webhook_peers import webhook_receiver
from workflows.webhook_delivery import WebhookDeliveryWorkflow

RECEIVER = "http://127.0.0.1:9/hooks"  # an allowed host; nothing is delivered in these tests
TOKEN_URL = "http://127.0.0.1:9/token"


@dataclass(frozen=True)
class Api:
    """The API (and worker) under test, with allowed hosts as `make run` has them."""

    stack: Stack

    @property
    def client_url(self) -> str:
        return self.stack.api_url

    @property
    def log_path(self) -> Path:
        return self.stack.api.log_path

    @property
    def webhook_task_queue(self) -> str:
        return self.stack.env["MOJAFLOW_WEBHOOK_TASK_QUEUE"]


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with stack.sibling(
        tmp_path_factory.mktemp("webhooks-api"),
        MOJAFLOW_WEBHOOK_ALLOWED_HOSTS="127.0.0.1,localhost",
        MOJAFLOW_WEBHOOK_TASK_QUEUE=f"tests-webhooks-{uuid.uuid4()}",
    ) as sibling:
        yield Api(sibling)


@pytest.fixture(scope="module")
def settings(stack: Stack) -> Settings:
    return Settings(data_dir=Path(stack.env["MOJAFLOW_DATA_DIR"]), database_url=stack.env.get("MOJAFLOW_DATABASE_URL"))


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The database the API reads, opened as the API opens it (with the secrets ring)."""
    db = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))
    try:
        yield db
    finally:
        await db.close()


def _client() -> str:
    return f"w{uuid.uuid4().hex[:9]}"


def _as(client: str) -> dict[str, str]:
    return {"client_key": client}


def _secret(label: str) -> str:
    """A secret of this run, with characters that base64 and URL encoding change, remembered by the session's
    secret scan (every log and history of the run is searched for it at the end)."""
    value = f"{label}+/={secrets.token_urlsafe(18)}&:"
    remember_secret(f"webhook test {label}", value)
    return value


def _body(auth: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"url": RECEIVER, "eventTypes": [EVENT_TYPE], "auth": auth, **overrides}


def _api_keys(**headers: str) -> dict[str, Any]:
    return {"type": "api_keys", "headers": headers or {"X-Api-Key": "k"}}


async def _create(http: httpx.AsyncClient, api: Api, client: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"{api.client_url}/webhooks/subscriptions", json=body, headers=_as(client))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    remember_secret("webhook signing secret", created["signingSecret"])
    return created


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


# -- subscriptions -----------------------------------------------------------------------------------------------


async def test_create_read_list_change_and_delete_a_subscription(api: Api, http: httpx.AsyncClient) -> None:
    client = _client()
    base = f"{api.client_url}/webhooks/subscriptions"
    response = await http.post(
        base, json=_body(_api_keys(**{"X-Api-Key": "one", "X-Tenant": "two"}), states=["COMPLETED"]),
        headers=_as(client),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    created = response.json()
    remember_secret("webhook signing secret", created["signingSecret"])
    sid = created["subscriptionId"]
    assert response.headers["location"] == f"/webhooks/subscriptions/{sid}"
    assert response.headers["cache-control"] == "no-store"
    assert created["signingSecret"].startswith("whsec_")
    assert len(base64.b64decode(created["signingSecret"].removeprefix("whsec_"), validate=True)) == 32
    expected = {
        "subscriptionId": sid,
        "url": RECEIVER,
        "eventTypes": [EVENT_TYPE],
        "states": ["COMPLETED"],
        "auth": {"type": "api_keys", "headers": {"X-Api-Key": "***", "X-Tenant": "***"}},
        "enabled": True,
    }
    assert {name: created[name] for name in expected} == expected

    read = await http.get(f"{base}/{sid}", headers=_as(client))
    assert read.status_code == 200, read.text
    assert "signingSecret" not in read.json()
    assert {name: read.json()[name] for name in expected} == expected
    listed = await http.get(base, headers=_as(client))
    assert [item["subscriptionId"] for item in listed.json()["items"]] == [sid]

    patched = await http.patch(
        f"{base}/{sid}", json={"states": None, "url": "http://localhost:9/other", "enabled": False}, headers=_as(client)
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["url"], patched.json()["enabled"], patched.json().get("states")) == (
        "http://localhost:9/other", False, None,
    )  # fmt: skip
    assert patched.json()["auth"] == expected["auth"]  # untouched
    reauth = await http.patch(
        f"{base}/{sid}", json={"auth": {"type": "basic", "username": "hooks", "password": _secret("password")}},
        headers=_as(client),
    )  # fmt: skip
    assert reauth.json()["auth"] == {"type": "basic", "username": "hooks", "password": "***"}
    assert (await http.get(f"{base}/{sid}", headers=_as(client))).json() == reauth.json()

    deleted = await http.delete(f"{base}/{sid}", headers=_as(client))
    assert (deleted.status_code, deleted.content) == (204, b"")
    _problem(await http.get(f"{base}/{sid}", headers=_as(client)), 404, "subscription_not_found")
    _problem(await http.delete(f"{base}/{sid}", headers=_as(client)), 404, "subscription_not_found")
    _problem(await http.patch(f"{base}/{sid}", json={"enabled": True}, headers=_as(client)), 404,
             "subscription_not_found")  # fmt: skip
    assert (await http.get(base, headers=_as(client))).json()["items"] == []


async def test_listing_is_paginated_newest_first(api: Api, http: httpx.AsyncClient) -> None:
    client = _client()
    made = [(await _create(http, api, client, _body(_api_keys())))["subscriptionId"] for _ in range(3)]
    base = f"{api.client_url}/webhooks/subscriptions"

    first = (await http.get(base, params={"limit": 2}, headers=_as(client))).json()
    second = (await http.get(base, params={"limit": 2, "cursor": first["nextCursor"]}, headers=_as(client))).json()

    assert [item["subscriptionId"] for item in first["items"] + second["items"]] == made[::-1]
    assert "nextCursor" not in second
    _problem(await http.get(base, params={"cursor": "not-ours"}, headers=_as(client)), 400, "invalid_cursor")
    _problem(await http.get(base, params={"limit": 0}, headers=_as(client)), 422, "validation_error")


INVALID = [
    # (what, body, the field named)
    ("no header", _body({"type": "api_keys", "headers": {}}), "auth.api_keys.headers"),
    ("six headers", _body(_api_keys(**{f"X-K{i}": "v" for i in range(6)})), "auth.api_keys.headers"),
    ("not a token", _body(_api_keys(**{"X Key": "v"})), "auth.api_keys.headers"),
    ("not a token (colon)", _body(_api_keys(**{"X:Key": "v"})), "auth.api_keys.headers"),
    ("Authorization", _body(_api_keys(Authorization="v")), "auth.api_keys.headers"),
    ("Content-Type", _body(_api_keys(**{"content-type": "v"})), "auth.api_keys.headers"),
    ("Host", _body(_api_keys(HOST="v")), "auth.api_keys.headers"),
    ("client_key", _body(_api_keys(client_key="v")), "auth.api_keys.headers"),
    ("Client-Key, as CGI sees it", _body(_api_keys(**{"Client-Key": "v"})), "auth.api_keys.headers"),
    ("idempotent_request_key", _body(_api_keys(idempotent_request_key="v")), "auth.api_keys.headers"),
    ("webhook-signature", _body(_api_keys(**{"Webhook-Signature": "v"})), "auth.api_keys.headers"),
    ("Content-Length", _body(_api_keys(**{"Content-Length": "1"})), "auth.api_keys.headers"),
    ("twice", _body(_api_keys(**{"X-Key": "a", "x-key": "b"})), "auth.api_keys.headers"),
    ("line break in a value", _body(_api_keys(**{"X-Key": "a\r\nHost: evil"})), "auth.api_keys.headers.X-Key"),
    ("empty value", _body(_api_keys(**{"X-Key": ""})), "auth.api_keys.headers.X-Key"),
    ("colon in username", _body({"type": "basic", "username": "a:b", "password": "p"}), "auth.basic.username"),
    ("no password", _body({"type": "basic", "username": "a"}), "auth.basic.password"),
    ("empty username", _body({"type": "basic", "username": "", "password": "p"}), "auth.basic.username"),
    ("no token URL", _body({"type": "oauth2_client_credentials", "clientId": "c", "clientSecret": "s"}),
     "auth.oauth2_client_credentials.tokenUrl"),
    ("token URL not http(s)", _body({"type": "oauth2_client_credentials", "clientId": "c", "clientSecret": "s",
                                     "tokenUrl": "ftp://127.0.0.1/token"}), "auth.oauth2_client_credentials.tokenUrl"),
    ("no client secret", _body({"type": "oauth2_client_credentials", "clientId": "c", "tokenUrl": TOKEN_URL}),
     "auth.oauth2_client_credentials.clientSecret"),
    ("bad scope", _body({"type": "oauth2_client_credentials", "clientId": "c", "clientSecret": "s",
                         "tokenUrl": TOKEN_URL, "scope": 'a "b"'}), "auth.oauth2_client_credentials.scope"),
    ("two schemes in one", _body({"type": "basic", "username": "a", "password": "p", "headers": {"X-K": "v"}}),
     "auth.basic.headers"),
    ("unknown scheme", _body({"type": "digest", "username": "a"}), "auth"),
    ("no auth", {"url": RECEIVER, "eventTypes": [EVENT_TYPE]}, "auth"),
    ("another event type", _body(_api_keys(), eventTypes=["payment.created"]), "eventTypes.0"),
    ("no event type", _body(_api_keys(), eventTypes=[]), "eventTypes"),
    ("unknown state", _body(_api_keys(), states=["PAID"]), "states.0"),
    ("empty states", _body(_api_keys(), states=[]), "states"),
    ("a state twice", _body(_api_keys(), states=["COMPLETED", "COMPLETED"]), "states"),
    ("not a URL", _body(_api_keys(), url="receiver"), "url"),
    ("a URL with a fragment", _body(_api_keys(), url="http://127.0.0.1:9/h#x"), "url"),
    ("unknown field", _body(_api_keys(), secret="x"), "secret"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "field"), INVALID, ids=[case[0] for case in INVALID])
async def test_invalid_subscriptions_are_422_naming_the_field(
    api: Api, http: httpx.AsyncClient, what: str, body: dict[str, Any], field: str
) -> None:
    client = _client()
    response = await http.post(f"{api.client_url}/webhooks/subscriptions", json=body, headers=_as(client))
    problem = _problem(response, 422, "validation_error")
    assert field in [error["field"] for error in problem["errors"]], problem
    assert (await http.get(f"{api.client_url}/webhooks/subscriptions", headers=_as(client))).json()["items"] == []


async def test_malformed_and_null_fields_are_refused(api: Api, http: httpx.AsyncClient) -> None:
    client = _client()
    base = f"{api.client_url}/webhooks/subscriptions"
    malformed = await http.post(base, content=b'{"url": ', headers={**_as(client), "content-type": "application/json"})
    _problem(malformed, 400, "malformed_json")
    sid = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
    nulls = _problem(await http.patch(f"{base}/{sid}", json={"url": None, "auth": None}, headers=_as(client)), 422,
                     "validation_error")  # fmt: skip
    assert sorted(error["field"] for error in nulls["errors"]) == ["auth", "url"]


REFUSED = [
    ("loopback not allowed", _body(_api_keys(), url="https://127.0.0.2/hooks"), "url"),
    ("private", _body(_api_keys(), url="https://10.0.0.1/hooks"), "url"),
    ("metadata", _body(_api_keys(), url="https://169.254.169.254/latest/meta-data"), "url"),
    ("decimal IP", _body(_api_keys(), url="https://2130706433/hooks"), "url"),
    ("IPv4-mapped IPv6", _body(_api_keys(), url="https://[::ffff:127.0.0.1]/hooks"), "url"),
    ("plain http", _body(_api_keys(), url="http://93.184.216.34/hooks"), "url"),
    ("credentials in the URL", _body(_api_keys(), url="http://user:pw@127.0.0.1:9/hooks"), "url"),
    ("token URL", _body({"type": "oauth2_client_credentials", "clientId": "c", "clientSecret": "s",
                         "tokenUrl": "https://169.254.169.254/token"}), "auth.oauth2_client_credentials.tokenUrl"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "field"), REFUSED, ids=[case[0] for case in REFUSED])
async def test_unsafe_urls_are_refused_at_subscription_time(
    api: Api, http: httpx.AsyncClient, what: str, body: dict[str, Any], field: str
) -> None:
    client = _client()
    response = await http.post(f"{api.client_url}/webhooks/subscriptions", json=body, headers=_as(client))
    problem = _problem(response, 422, "unsafe_url")
    assert [error["field"] for error in problem["errors"]] == [field]
    assert "pw" not in problem["detail"]  # the guard names the host and the reason, never the URL's userinfo
    assert (await http.get(f"{api.client_url}/webhooks/subscriptions", headers=_as(client))).json()["items"] == []


async def test_a_patch_is_guarded_too_and_the_default_allows_no_local_host(
    stack: Stack, api: Api, http: httpx.AsyncClient
) -> None:
    client = _client()
    sid = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
    patch = await http.patch(
        f"{api.client_url}/webhooks/subscriptions/{sid}", json={"url": "https://10.1.2.3/x"}, headers=_as(client)
    )
    assert [error["field"] for error in _problem(patch, 422, "unsafe_url")["errors"]] == ["url"]
    read = await http.get(f"{api.client_url}/webhooks/subscriptions/{sid}", headers=_as(client))
    assert read.json()["url"] == RECEIVER
    # the session's API runs with the production default: no allowed host, so no local receiver either
    if not stack.env.get("MOJAFLOW_WEBHOOK_ALLOWED_HOSTS"):
        refused = await http.post(
            f"{stack.api_url}/webhooks/subscriptions", json=_body(_api_keys()), headers=_as(client)
        )
        _problem(refused, 422, "unsafe_url")


# -- secrets -----------------------------------------------------------------------------------------------------


def _forms(value: str) -> set[str]:
    raw = value.encode()
    return {
        value,
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


async def test_secrets_are_write_only_sealed_at_rest_and_never_logged(
    api: Api, http: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    client = _client()
    header_value, password, client_secret = _secret("header"), _secret("password"), _secret("client-secret")
    username = f"user{uuid.uuid4().hex[:6]}"
    secret_forms = _forms(header_value) | _forms(password) | _forms(client_secret)
    secret_forms |= _forms(f"{username}:{password}")  # as `Authorization: Basic` would carry it
    base = f"{api.client_url}/webhooks/subscriptions"
    answers: list[httpx.Response] = []

    async def call(method: str, url: str, **request: Any) -> httpx.Response:
        response = await http.request(method, url, headers=_as(client), **request)
        answers.append(response)
        return response

    schemes = [
        _api_keys(**{"X-Api-Key": header_value}),
        {"type": "basic", "username": username, "password": password},
        {"type": "oauth2_client_credentials", "clientId": "mojaflow", "clientSecret": client_secret,
         "tokenUrl": TOKEN_URL, "scope": "payments.write"},
    ]  # fmt: skip
    ids = []
    for auth in schemes:
        created = await call("POST", base, json=_body(auth))
        assert created.status_code == 201, created.text
        ids.append(created.json()["subscriptionId"])
        remember_secret("webhook signing secret", created.json()["signingSecret"])
    for sid in ids:
        await call("GET", f"{base}/{sid}")
        await call("PATCH", f"{base}/{sid}", json={"enabled": True})
        rotated = await call("POST", f"{base}/{sid}/rotate-secret")
        remember_secret("webhook signing secret", rotated.json()["signingSecret"])
    await call("GET", base)
    # refused requests carrying secrets: the answer names the field, never echoes the value
    await call("POST", base, json=_body({"type": "basic", "username": "a:b", "password": password}))
    await call("POST", base, json=_body(_api_keys(**{"X-Key": header_value, "Host": header_value})))
    await call("POST", base, json=_body({**schemes[2], "tokenUrl": "https://10.0.0.1/token"}))
    await call("PATCH", f"{base}/{ids[0]}", json={"auth": {**schemes[2], "scope": '"'}})

    assert [response.status_code for response in answers[-4:]] == [422] * 4
    shown = "\n".join(response.text for response in answers)
    assert [form for form in secret_forms if form in shown] == []
    assert username in shown  # the username is not a secret: shown back
    log = api.log_path.read_bytes().decode(errors="replace")
    assert [form for form in secret_forms if form in log] == []
    stored = b"".join(path.read_bytes() for path in settings.data_dir.glob("mojaflow.db*"))
    if settings.database_url is None:  # SQLite: the file and its WAL hold them only sealed
        assert [form for form in secret_forms if form.encode() in stored] == []
    # ... and the delivery's read opens them again
    opened = await load_subscription_for_delivery(database, ids[0])
    assert opened is not None and opened.auth.type == "api_keys"
    assert opened.auth.headers["X-Api-Key"].get_secret_value() == header_value
    assert header_value not in repr(opened)


async def test_the_signing_secret_is_shown_once_and_a_rotation_keeps_the_old_one_for_24_hours(
    api: Api, http: httpx.AsyncClient, database: Database
) -> None:
    client = _client()
    created = await _create(http, api, client, _body(_api_keys()))
    sid, first = created["subscriptionId"], created["signingSecret"]
    base = f"{api.client_url}/webhooks/subscriptions"
    assert first not in (await http.get(f"{base}/{sid}", headers=_as(client))).text
    assert first not in (await http.get(base, headers=_as(client))).text

    before = datetime.now(UTC)
    rotated = await http.post(f"{base}/{sid}/rotate-secret", headers=_as(client))
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()["signingSecret"]
    remember_secret("webhook signing secret", second)
    assert second.startswith("whsec_") and second != first
    overlap_ends = datetime.fromisoformat(rotated.json()["previousSecretsExpireAt"])
    assert before + timedelta(hours=24) <= overlap_ends <= datetime.now(UTC) + timedelta(hours=24)
    assert second not in (await http.get(f"{base}/{sid}", headers=_as(client))).text

    now = await load_subscription_for_delivery(database, sid)
    later = await load_subscription_for_delivery(database, sid, now=overlap_ends + timedelta(seconds=1))
    assert now is not None and later is not None
    assert (now.signing_secrets, later.signing_secrets) == ((second, first), (second,))


async def test_a_subscription_is_its_clients_and_an_operator_sees_all(
    stack: Stack, api: Api, http: httpx.AsyncClient
) -> None:
    owner, other = _client(), _client()
    sid = (await _create(http, api, owner, _body(_api_keys())))["subscriptionId"]
    others = (await _create(http, api, other, _body(_api_keys())))["subscriptionId"]
    base = f"{api.client_url}/webhooks/subscriptions"
    # the other client, with a key of its own made by `mojaflow keys create` (no client_key header needed)
    other_key = {"Authorization": f"Bearer {keys_for(api.client_url).key(other)}"}

    for method, url, body in (
        ("GET", f"{base}/{sid}", None),
        ("PATCH", f"{base}/{sid}", {"enabled": False}),
        ("DELETE", f"{base}/{sid}", None),
        ("POST", f"{base}/{sid}/rotate-secret", None),
        ("POST", f"{base}/{sid}/recover", {"since": "2026-01-01T00:00:00Z"}),
    ):
        _problem(await http.request(method, url, json=body, headers=other_key), 404, "subscription_not_found")
    assert [item["subscriptionId"] for item in (await http.get(base, headers=other_key)).json()["items"]] == [others]
    assert (await http.get(f"{base}/{sid}", headers=_as(owner))).json()["enabled"] is True  # untouched

    operator_read = await http.get(f"{base}/{sid}")  # no client_key: the operator's key
    assert operator_read.status_code == 200, operator_read.text
    everyone: set[str] = set()
    cursor = None
    while True:
        page = (await http.get(base, params={"limit": 200, **({"cursor": cursor} if cursor else {})})).json()
        everyone |= {item["subscriptionId"] for item in page["items"]}
        if not (cursor := page.get("nextCursor")):
            break
    assert {sid, others} <= everyone
    _problem(await http.get(base, headers={"client_key": "other"}, auth=None), 401, "unauthorized")


# -- deliveries --------------------------------------------------------------------------------------------------


async def _outbox(
    database: Database,
    *,
    client: str,
    subscription_id: str,
    transfer_id: str,
    sequence: int,
    status: DeliveryStatus = DeliveryStatus.DELIVERING,
    created_at: datetime | None = None,
    before_batches: bool = False,
) -> str:
    """An event and its delivery, as the outbox writes them (then moved to `status`), dispatched in a batch of its
    own (its workflow's id stored, though no such workflow runs) or, `before_batches`, as versions before batches
    left it (no workflow id stored: its transfer's workflow to that subscriber held it); the delivery's id."""
    event = event_id(transfer_id, sequence)
    delivery = delivery_id(event, subscription_id)
    at = created_at or datetime.now(UTC)
    data = {
        "transferId": transfer_id, "direction": "OUTBOUND", "previousState": "RECEIVED",
        "currentState": "RESOLVING_PARTY", "sequence": sequence, "amount": "10", "currency": "USD",
        "occurredAt": at.isoformat(),
    }  # fmt: skip
    async with database.engine.begin() as connection:
        await connection.execute(
            webhook_events.insert().values(
                event_id=event, transfer_id=transfer_id, sequence=sequence, client_key=client, event_type=EVENT_TYPE,
                product="retail_payments", payment_channel="online", data=data, occurred_at=at,
            )
        )  # fmt: skip
        await connection.execute(
            webhook_deliveries.insert().values(
                delivery_id=delivery, event_id=event, subscription_id=subscription_id, transfer_id=transfer_id,
                client_key=client, status=status.value, cycle=1, attempts=0, created_at=at, updated_at=at,
                dispatched_at=at, workflow_id=None if before_batches else batch_workflow_id(event, subscription_id, 1),
            )
        )  # fmt: skip
    return delivery


async def _attempts(database: Database, delivery: str, codes: list[int | None]) -> None:
    """Attempts as the delivery activity records them: hourly, the last one's status code or error."""
    start = datetime.now(UTC)
    async with database.engine.begin() as connection:
        for number, code in enumerate(codes, start=1):
            await connection.execute(
                webhook_attempts.insert().values(
                    delivery_id=delivery, cycle=1, attempt=number, manual=False,
                    at=start + timedelta(hours=number - 1), status_code=code, latency_ms=12,
                    error_class=None if code else "ConnectError", response_excerpt="busy" if code else None,
                )
            )  # fmt: skip
        await connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.delivery_id == delivery)
            .values(attempts=len(codes), last_attempt_at=start + timedelta(hours=len(codes) - 1))
        )


async def test_deliveries_are_listed_filtered_and_read_with_their_attempts(
    api: Api, http: httpx.AsyncClient, database: Database
) -> None:
    client, other = _client(), _client()
    sid = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
    second = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
    others = (await _create(http, api, other, _body(_api_keys())))["subscriptionId"]
    transfer, another = str(uuid.uuid4()), str(uuid.uuid4())
    d1 = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=1,
                       status=DeliveryStatus.DELIVERED)  # fmt: skip
    d2 = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=2)
    d3 = await _outbox(database, client=client, subscription_id=second, transfer_id=another, sequence=1)
    hidden = await _outbox(database, client=other, subscription_id=others, transfer_id=str(uuid.uuid4()), sequence=1)
    await _attempts(database, d2, [None, 500, 503])
    base = f"{api.client_url}/webhooks/deliveries"

    async def ids(**params: Any) -> list[str]:
        response = await http.get(base, params=params, headers=_as(client))
        assert response.status_code == 200, response.text
        return [item["deliveryId"] for item in response.json()["items"]]

    assert await ids() == [d3, d2, d1]
    assert await ids(subscriptionId=sid) == [d2, d1]
    assert await ids(transferId=transfer) == [d2, d1]
    assert await ids(eventId=event_id(transfer, 2)) == [d2]
    assert await ids(status="DELIVERED") == [d1]
    assert await ids(subscriptionId=others) == []  # another client's: not listed
    page = (await http.get(base, params={"limit": 2}, headers=_as(client))).json()
    rest = (await http.get(base, params={"limit": 2, "cursor": page["nextCursor"]}, headers=_as(client))).json()
    assert [item["deliveryId"] for item in page["items"] + rest["items"]] == [d3, d2, d1]
    _problem(await http.get(base, params={"status": "LOST"}, headers=_as(client)), 422, "validation_error")

    read = await http.get(f"{base}/{d2}", headers=_as(client))
    assert read.status_code == 200, read.text
    detail = read.json()
    assert (detail["status"], detail["cycle"], detail["attempts"], detail["transferId"]) == (
        "DELIVERING", 1, 3, transfer,
    )  # fmt: skip
    assert detail["event"]["id"] == event_id(transfer, 2)
    assert detail["event"]["event_type"] == EVENT_TYPE
    assert detail["event"]["data"]["sequence"] == 2
    assert [(a["attempt"], a.get("statusCode"), a.get("errorClass")) for a in detail["attemptLog"]] == [
        (1, None, "ConnectError"), (2, 500, None), (3, 503, None),
    ]  # fmt: skip
    _problem(await http.get(f"{base}/{hidden}", headers=_as(client)), 404, "delivery_not_found")
    _problem(await http.post(f"{base}/{hidden}/retry", headers=_as(client)), 404, "delivery_not_found")
    _problem(await http.get(f"{base}/nothing-{uuid.uuid4().hex}", headers=_as(client)), 404, "delivery_not_found")
    assert (await http.get(f"{base}/{hidden}")).status_code == 200  # the operator reads everyone's
    assert hidden in [item["deliveryId"] for item in (await http.get(base, params={"subscriptionId": others})).json()
                      ["items"]]  # fmt: skip


async def _handed_over(
    http: httpx.AsyncClient, api: Api, temporal: Client, client: str, delivery: str, cycle: int
) -> dict[str, Any]:
    """The delivery in that cycle, as the API reads it, names its workflow (`workflowId`: a batch named after the
    delivery that started it), and that workflow, on the server, holds the delivery in that cycle (its query says
    so) and lists its transfer and subscription."""
    view = await _until(
        http, f"{api.client_url}/webhooks/deliveries/{delivery}", client,
        lambda body: body["cycle"] == cycle and body.get("workflowId") is not None,
    )  # fmt: skip
    handle = temporal.get_workflow_handle(view["workflowId"])
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        held = await handle.query(WebhookDeliveryWorkflow.deliveries)
        if any((each.delivery_id, each.cycle) == (delivery, cycle) for each in held):
            described = await handle.describe()
            attributes = described.typed_search_attributes
            assert view["transferId"] in attributes.get(WEBHOOK_TRANSFER_IDS), attributes
            assert attributes.get(WEBHOOK_SUBSCRIPTION_ID) == view["subscriptionId"], attributes
            return {"id": described.id, "type": described.workflow_type, "task_queue": described.task_queue}
        assert asyncio.get_running_loop().time() < deadline, f"{delivery} cycle {cycle} not in {held}"
        await asyncio.sleep(0.2)


async def test_a_failed_delivery_is_retried_in_a_new_cycle_and_recovered(
    stack: Stack, api: Api, http: httpx.AsyncClient, database: Database
) -> None:
    client = _client()
    sid = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
    long_ago = datetime.now(UTC) - timedelta(days=10)
    transfer = str(uuid.uuid4())
    failed = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=1,
                           status=DeliveryStatus.FAILED)  # fmt: skip
    old = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=2,
                        status=DeliveryStatus.FAILED, created_at=long_ago)  # fmt: skip
    recent = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=3,
                           status=DeliveryStatus.FAILED)  # fmt: skip
    pending = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=4,
                            status=DeliveryStatus.PENDING)  # fmt: skip
    base = f"{api.client_url}/webhooks"

    retried = await http.post(f"{base}/deliveries/{failed}/retry", headers=_as(client))
    assert retried.status_code == 202, retried.text
    assert retried.json()["cycle"] == 2 and retried.json()["status"] in ("PENDING", "DELIVERING", "DELIVERED")
    # a new batch, named after the delivery's new cycle; the retry's answer names it already
    assert retried.json()["workflowId"] == batch_workflow_id(event_id(transfer, 1), sid, 2)
    started = await _handed_over(http, api, stack.client, client, failed, 2)
    assert started == {
        "id": retried.json()["workflowId"], "type": "WebhookDeliveryWorkflow", "task_queue": api.webhook_task_queue,
    }  # fmt: skip
    _problem(await http.post(f"{base}/deliveries/{pending}/retry", headers=_as(client)), 409, "delivery_not_retryable")
    # DELIVERING, but no workflow of its cycle runs (terminated by hand, say): a new cycle too
    orphan = await _outbox(database, client=client, subscription_id=sid, transfer_id=transfer, sequence=5)
    adopted = await http.post(f"{base}/deliveries/{orphan}/retry", headers=_as(client))
    assert (adopted.status_code, adopted.json()["cycle"]) == (202, 2), adopted.text
    adopter = await _handed_over(http, api, stack.client, client, orphan, 2)
    assert adopter["id"] == batch_workflow_id(event_id(transfer, 5), sid, 2)

    recovered = await http.post(
        f"{base}/subscriptions/{sid}/recover", json={"since": (long_ago + timedelta(days=1)).isoformat()},
        headers=_as(client),
    )  # fmt: skip
    assert recovered.status_code == 202, recovered.text
    assert recovered.json() == {"restarted": 1, "deliveryIds": [recent]}  # `failed` is in cycle 2 already
    assert (await _handed_over(http, api, stack.client, client, recent, 2))["id"] == batch_workflow_id(
        event_id(transfer, 3), sid, 2
    )
    old_view = (await http.get(f"{base}/deliveries/{old}", headers=_as(client))).json()
    assert (old_view["status"], old_view["cycle"]) == ("FAILED", 1)  # before `since`: left alone
    naive = await http.post(f"{base}/subscriptions/{sid}/recover", json={"since": "2026-01-01T00:00:00"},
                            headers=_as(client))  # fmt: skip
    assert [error["field"] for error in _problem(naive, 422, "validation_error")["errors"]] == ["since"]

    await http.patch(f"{base}/subscriptions/{sid}", json={"enabled": False}, headers=_as(client))
    _problem(await http.post(f"{base}/deliveries/{old}/retry", headers=_as(client)), 409, "subscription_inactive")
    _problem(
        await http.post(f"{base}/subscriptions/{sid}/recover", json={"since": long_ago.isoformat()},
                        headers=_as(client)), 409, "subscription_inactive",
    )  # fmt: skip


async def test_deleting_or_disabling_cancels_the_open_deliveries_and_their_workflows(
    stack: Stack, api: Api, http: httpx.AsyncClient, database: Database
) -> None:
    client = _client()
    base = f"{api.client_url}/webhooks"
    # a batch's workflow, as dispatchers start it; and a run started before batches (one transfer's deliveries,
    # under its old id), which still runs until its deliveries settle
    for action, before_batches in (("delete", False), ("disable", False), ("disable", True)):
        sid = (await _create(http, api, client, _body(_api_keys())))["subscriptionId"]
        transfer = str(uuid.uuid4())
        outbox = {"client": client, "subscription_id": sid, "transfer_id": transfer, "before_batches": before_batches}
        running = await _outbox(database, sequence=1, **outbox)
        waiting = await _outbox(database, sequence=2, status=DeliveryStatus.PENDING, **outbox)
        done = await _outbox(database, sequence=3, status=DeliveryStatus.DELIVERED, **outbox)
        if before_batches:
            item = DeliveryItem(delivery_id=running, event_id=event_id(transfer, 1), sequence=1)
            handle = await stack.client.start_workflow(
                "WebhookDeliveryWorkflow",
                DeliveryBatch(transfer_id=transfer, subscription_id=sid, deliveries=[item]),
                id=delivery_workflow_id(transfer, sid), task_queue=api.webhook_task_queue,
            )  # fmt: skip
        else:
            item = DeliveryItem(delivery_id=running, event_id=event_id(transfer, 1), transfer_id=transfer, sequence=1)
            batch = DeliveryBatch(subscription_id=sid, deliveries=[item])
            await dispatch_batch(stack.client, batch, task_queue=api.webhook_task_queue, timeout_s=10)
            await mark_dispatched(database, [batch])
            handle = stack.client.get_workflow_handle(batch.workflow_id)
        # the API names the workflow it will cancel: the batch's stored id, or the transfer's old one
        named = await http.get(f"{base}/deliveries/{running}", headers=_as(client))
        assert named.json()["workflowId"] == handle.id, named.text

        if action == "delete":
            answer = await http.delete(f"{base}/subscriptions/{sid}", headers=_as(client))
            assert answer.status_code == 204, answer.text
        else:
            answer = await http.patch(f"{base}/subscriptions/{sid}", json={"enabled": False}, headers=_as(client))
            assert answer.status_code == 200, answer.text

        statuses = {}
        for delivery in (running, waiting, done):
            read = await http.get(f"{base}/deliveries/{delivery}", headers=_as(client))
            statuses[delivery] = read.json()["status"]
        assert statuses == {running: "CANCELLED", waiting: "CANCELLED", done: "DELIVERED"}, (action, before_batches)
        # A cancel request that reaches the run while a workflow task is open (its first attempt) enters the
        # history when that task completes: wait for it rather than read the history once.
        await _cancel_requested(handle, action)


async def _cancel_requested(handle: WorkflowHandle[Any, Any], action: str, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        events = [event.event_type async for event in handle.fetch_history_events()]
        if EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in events:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{action}: no cancel request in {events}"
        await asyncio.sleep(0.1)


# -- end to end: a real transfer's events, a real receiver --------------------------------------------------------


async def _until(http: httpx.AsyncClient, url: str, client: str, done: Any, timeout_s: float = 30) -> Any:
    """GET `url` as `client` until `done(body)` holds; its body then (fails with the last one seen)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    body: Any = None
    while asyncio.get_running_loop().time() < deadline:
        response = await http.get(url, headers=_as(client))
        body = response.json()
        if response.status_code == 200 and done(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never got there; last seen {body}")


async def test_a_real_transfers_deliveries_are_listed_retried_now_and_sent_again(
    stack: Stack, api: Api, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    client = _client()
    receiver = webhook_receiver(tmp_path)
    with receiver.process.start():
        (await http.put(f"{receiver.url}/_sim/faults", json={"status": 500})).raise_for_status()
        completed_only = (
            await _create(http, api, client, _body(_api_keys(), url=f"{receiver.url}/completed", states=["COMPLETED"]))
        )["subscriptionId"]
        every_state = (await _create(http, api, client, _body(_api_keys(), url=f"{receiver.url}/all")))[
            "subscriptionId"
        ]
        payer, _ = await new_payer(http, stack.cbs_url)
        started = await http.post(
            f"{api.client_url}/transfers", json=transfer_body(payer=payer),
            headers=money_movement_headers(client_key=client),
        )  # fmt: skip
        assert started.status_code == 201 and started.json()["currentState"] == "COMPLETED", started.text
        transfer = started.json()["transferId"]
        base = f"{api.client_url}/webhooks/deliveries"

        # the outbox wrote one delivery per state change for the unfiltered subscription, one for the filtered
        listing = await _until(
            http, f"{base}?transferId={transfer}", client,
            lambda body: any(item["subscriptionId"] == completed_only and item["attempts"] >= 1
                             for item in body["items"]),
        )  # fmt: skip
        mine = [item for item in listing["items"] if item["subscriptionId"] == completed_only]
        assert len(mine) == 1, listing
        every = [item for item in listing["items"] if item["subscriptionId"] == every_state]
        assert len(every) >= 4 and len({item["eventId"] for item in every}) == len(every)
        assert mine[0]["eventId"] in {item["eventId"] for item in every}  # the COMPLETED event, to both
        delivery, event = mine[0]["deliveryId"], mine[0]["eventId"]
        assert mine[0]["status"] == "DELIVERING"  # its first attempt met a 500: the next is an hour away

        # each delivery names its workflow, once dispatched: one Temporal knows, a batch of that delivery's
        # subscriber that lists the transfer (a batch may hold several of its deliveries, or other transfers' too)
        listing = await _until(
            http, f"{base}?transferId={transfer}", client,
            lambda body: all(item.get("workflowId") for item in body["items"]),
        )  # fmt: skip
        for item in listing["items"]:
            read = (await http.get(f"{base}/{item['deliveryId']}", headers=_as(client))).json()
            described = await stack.client.get_workflow_handle(read["workflowId"]).describe()
            assert described.workflow_type == "WebhookDeliveryWorkflow", read
            assert described.typed_search_attributes.get(WEBHOOK_SUBSCRIPTION_ID) == item["subscriptionId"], read
            assert transfer in described.typed_search_attributes.get(WEBHOOK_TRANSFER_IDS), read

        # the receiver recovers; a retry attempts now, recorded as manual, the scheduled count unchanged
        (await http.delete(f"{receiver.url}/_sim/faults")).raise_for_status()
        retried = await http.post(f"{base}/{delivery}/retry", headers=_as(client))
        assert retried.status_code == 202, retried.text
        delivered = await _until(http, f"{base}/{delivery}", client, lambda body: body["status"] == "DELIVERED")
        assert (delivered["cycle"], delivered["attempts"]) == (1, 1)
        assert [(a["manual"], a.get("statusCode")) for a in delivered["attemptLog"]] == [(False, 500), (True, 200)]
        assert delivered["event"]["data"]["currentState"] == "COMPLETED"

        # a delivered one is sent again in a new cycle, with the same event id
        again = await http.post(f"{base}/{delivery}/retry", headers=_as(client))
        assert (again.status_code, again.json()["cycle"]) == (202, 2), again.text
        await _until(
            http, f"{base}/{delivery}", client, lambda body: (body["cycle"], body["status"]) == (2, "DELIVERED")
        )
        posted = (await http.get(f"{receiver.url}/_sim/events", params={"eventId": event})).json()["events"]
        posts = [item for item in posted if item["path"] == "/completed"]
        assert [item["status"] for item in posts] == [500, 200, 200]  # counted at the receiver
        assert {item["headers"]["webhook-id"] for item in posts} == {event}
        assert {item["headers"]["idempotent_request_key"] for item in posts} == {event}
        assert {item["body"]["id"] for item in posts} == {event}

        for sid in (completed_only, every_state):  # their open deliveries and workflows cancelled
            assert (
                await http.delete(f"{api.client_url}/webhooks/subscriptions/{sid}", headers=_as(client))
            ).status_code == 204
        left = (
            await http.get(base, params={"subscriptionId": every_state, "status": "DELIVERING"}, headers=_as(client))
        ).json()
        assert left["items"] == []
