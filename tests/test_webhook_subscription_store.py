"""The webhook subscriptions' store on SQLite and PostgreSQL (mojaflow/webhook_subscriptions.py): what the outbox
matches, what the delivery activity reads, concurrent rotations, re-encryption after a secrets-ring rotation.
The API over it: tests/api/test_webhook_subscriptions.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mojaflow.database import Database
from mojaflow.keys import KeyRing, UnknownKeyError
from mojaflow.webhook_deliveries import load_oauth_token, save_oauth_token
from mojaflow.webhook_models import EVENT_TYPE
from mojaflow.webhook_subscription_models import SubscriptionCreate, SubscriptionUpdate
from mojaflow.webhook_subscription_secrets import reseal_subscription_secrets
from mojaflow.webhook_subscriptions import (
    create_subscription,
    delete_subscription,
    load_subscription_for_delivery,
    matching_subscription_ids,
    rotate_signing_secret,
    update_subscription,
)

OLD, NEW = os.urandom(32), os.urandom(32)


def _ring(*keys: bytes) -> KeyRing:
    return KeyRing("MOJAFLOW_SECRETS_KEYS", tuple((f"k{key.hex()[:8]}", key) for key in keys))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    return str(request.getfixturevalue("postgres"))


@pytest.fixture
async def database(url: str) -> AsyncIterator[Database]:
    database = Database(url, secrets=_ring(OLD))
    await database.create_schema()
    yield database
    await database.close()


def _client() -> str:
    return f"s{uuid.uuid4().hex[:9]}"


def _request(**fields: object) -> SubscriptionCreate:
    body = {"url": "https://93.184.216.34/hooks", "eventTypes": [EVENT_TYPE], **fields}
    body.setdefault("auth", {"type": "basic", "username": "hooks", "password": f"pw-{uuid.uuid4().hex}"})
    return SubscriptionCreate.model_validate(body)


async def _matching(database: Database, client: str, event_type: str, state: str) -> list[str]:
    # as the outbox asks: inside its own transaction
    return await database.transaction(
        lambda connection: matching_subscription_ids(connection, client, event_type, state)
    )


async def test_the_outbox_matches_enabled_live_subscriptions_of_the_client_by_type_and_state(
    database: Database,
) -> None:
    client, other = _client(), _client()
    every = (await create_subscription(database, client, _request())).subscription_id
    completed = (await create_subscription(database, client, _request(states=["COMPLETED", "ABORTED"]))).subscription_id
    disabled = (await create_subscription(database, client, _request(enabled=False))).subscription_id
    deleted = (await create_subscription(database, client, _request())).subscription_id
    others = (await create_subscription(database, other, _request())).subscription_id
    await delete_subscription(database, deleted)

    assert await _matching(database, client, EVENT_TYPE, "COMPLETED") == [every, completed]
    assert await _matching(database, client, EVENT_TYPE, "RECEIVED") == [every]
    assert await _matching(database, client, "moneymovementservices.other", "COMPLETED") == []
    assert await _matching(database, other, EVENT_TYPE, "RECEIVED") == [others]
    assert disabled not in await _matching(database, client, EVENT_TYPE, "COMPLETED")

    await update_subscription(database, completed, SubscriptionUpdate(states=None))
    await update_subscription(database, disabled, SubscriptionUpdate(enabled=True))
    assert await _matching(database, client, EVENT_TYPE, "RECEIVED") == [every, completed, disabled]
    await update_subscription(database, every, SubscriptionUpdate(enabled=False))
    assert await _matching(database, client, EVENT_TYPE, "RECEIVED") == [completed, disabled]


async def test_the_delivery_reads_the_secrets_and_whether_the_subscription_is_still_active(database: Database) -> None:
    client = _client()
    created = await create_subscription(database, client, _request(auth={
        "type": "oauth2_client_credentials", "clientId": "mojaflow", "clientSecret": "cs-123456",
        "tokenUrl": "https://93.184.216.34/token", "scope": "payments"}))  # fmt: skip
    sid = created.subscription_id

    loaded = await load_subscription_for_delivery(database, sid)
    assert loaded is not None and loaded.auth.type == "oauth2_client_credentials"
    assert (loaded.client_key, loaded.url, loaded.auth.client_id, loaded.auth.scope) == (
        client, "https://93.184.216.34/hooks", "mojaflow", "payments",
    )  # fmt: skip
    assert loaded.auth.client_secret.get_secret_value() == "cs-123456"
    assert loaded.signing_secrets == (created.signing_secret,) and loaded.active
    assert "cs-123456" not in repr(loaded) and created.signing_secret not in repr(loaded)

    await update_subscription(database, sid, SubscriptionUpdate(enabled=False))
    disabled = await load_subscription_for_delivery(database, sid)
    assert disabled is not None and (disabled.enabled, disabled.deleted, disabled.active) == (False, False, False)
    await delete_subscription(database, sid)
    deleted = await load_subscription_for_delivery(database, sid)
    assert deleted is not None and (deleted.deleted, deleted.active) == (True, False)
    assert await load_subscription_for_delivery(database, f"sub_{uuid.uuid4().hex}") is None


async def test_concurrent_rotations_all_take_effect(database: Database) -> None:
    created = await create_subscription(database, _client(), _request())

    rotated = await asyncio.gather(*(rotate_signing_secret(database, created.subscription_id) for _ in range(5)))

    secrets = [rotation.signing_secret for rotation in rotated if rotation is not None]
    loaded = await load_subscription_for_delivery(database, created.subscription_id)
    assert loaded is not None
    assert sorted(loaded.signing_secrets) == sorted([*secrets, created.signing_secret])  # none lost
    assert loaded.signing_secrets[-1] == created.signing_secret  # newest first


async def test_a_secrets_ring_rotation_reseals_them_and_the_old_key_can_go(database: Database, url: str) -> None:
    created = await create_subscription(database, _client(), _request(auth={
        "type": "api_keys", "headers": {"X-Api-Key": "hk-abcdef"}}))  # fmt: skip
    sid = created.subscription_id
    rotated = Database(url, secrets=_ring(NEW, OLD))  # `mojaflow keys rotate-secrets`: a new first key
    only_new = Database(url, secrets=_ring(NEW))
    try:
        with pytest.raises(UnknownKeyError):  # still under the old key
            await load_subscription_for_delivery(only_new, sid)
        resealed = await reseal_subscription_secrets(rotated)
        assert resealed.subscriptions >= 1 and resealed.unreadable == {}
        assert (await reseal_subscription_secrets(rotated)).subscriptions == 0  # nothing left to do

        loaded = await load_subscription_for_delivery(only_new, sid)  # the old key dropped from the ring
        assert loaded is not None and loaded.auth.type == "api_keys"
        assert loaded.auth.headers["X-Api-Key"].get_secret_value() == "hk-abcdef"
        assert loaded.signing_secrets == (created.signing_secret,)
        unknown = Database(url, secrets=_ring(os.urandom(32)))  # a ring that lost the key
        lost = await reseal_subscription_secrets(unknown)
        await unknown.close()
        assert lost.subscriptions == 0 and sum(lost.unreadable.values()) >= 1
    finally:
        await rotated.close()
        await only_new.close()


async def test_a_cached_oauth_token_sealed_under_a_key_rotated_out_is_fetched_again(
    database: Database, url: str
) -> None:
    """The token cache is sealed too; the resealing of a rotation leaves it (an hour's cache at most): once the old
    key is dropped, the cached token reads as absent, so the delivery fetches a new one instead of failing."""
    sid = (await create_subscription(database, _client(), _request())).subscription_id
    now = datetime.now(UTC)
    await save_oauth_token(database, sid, "tok-under-old-key", now + timedelta(minutes=30))
    cached = await load_oauth_token(database, sid, now=now)
    assert cached is not None and cached[0] == "tok-under-old-key"
    only_new = Database(url, secrets=_ring(NEW))
    try:
        assert await load_oauth_token(only_new, sid, now=now) is None
    finally:
        await only_new.close()
