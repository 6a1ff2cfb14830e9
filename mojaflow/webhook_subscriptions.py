"""Webhook subscriptions in our database: the client API's store, the outbox's matching, the delivery's read side.

Secrets are stored only sealed with the secrets ring (`mojaflow.webhook_subscription_secrets`): the API-key header
values, the Basic password, the OAuth2 client secret (`auth_sealed`) and the Standard Webhooks signing secrets
(`signing_sealed`). What may be shown back (header names, username, client id, token URL, scope) is `auth_public`.

* `create_subscription` … `rotate_signing_secret`: what the API does (`api.webhook_service`); none checks who asks.
* `matching_subscription_ids(connection, …)`: the outbox's question, asked inside its own transaction.
* `load_subscription_for_delivery(database, id)`: the delivery activity's read, secrets opened; never into a
  workflow's input or history.

A rotation keeps the previous signing secrets valid for `SIGNING_OVERLAP` (24 h): deliveries carry a signature
per active secret, so a receiver can switch at its pace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from mojaflow.database import Database
from mojaflow.webhook_models import DeliveryStatus, workflow_of
from mojaflow.webhook_subscription_models import (
    ApiKeysAuth,
    ApiKeysAuthView,
    BasicAuth,
    BasicAuthView,
    OAuth2ClientCredentialsAuth,
    OAuth2ClientCredentialsAuthView,
    SigningSecretRotated,
    SubscriptionAuth,
    SubscriptionAuthView,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
    SubscriptionView,
)
from mojaflow.webhook_subscription_secrets import (
    SIGNING_OVERLAP,
    SIGNING_SECRET_PREFIX,
    new_signing_secret,
    open_auth,
    open_signing,
    seal_auth,
    seal_signing,
    sealer_of,
    signing_expiry,
)
from mojaflow.webhook_tables import webhook_deliveries, webhook_subscriptions

__all__ = [
    "SIGNING_OVERLAP",
    "SIGNING_SECRET_PREFIX",
    "OpenDelivery",
    "StoredSubscription",
    "SubscriptionSecrets",
    "create_subscription",
    "delete_subscription",
    "get_subscription",
    "list_subscriptions",
    "load_subscription_for_delivery",
    "matching_subscription_ids",
    "new_signing_secret",
    "rotate_signing_secret",
    "update_subscription",
]

_OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.DELIVERING.value)
_AUTH = TypeAdapter[SubscriptionAuth](SubscriptionAuth)
_table = webhook_subscriptions
_columns = _table.c


@dataclass(frozen=True)
class StoredSubscription:
    """A live (not deleted) subscription as the API shows it, with its owner."""

    view: SubscriptionView
    client_key: str


@dataclass(frozen=True)
class OpenDelivery:
    """A delivery cancelled by a delete or disable: its workflow, if dispatched, is to be cancelled too."""

    delivery_id: str
    workflow_id: str | None


@dataclass(frozen=True, repr=False)
class SubscriptionSecrets:
    """What the delivery activity needs to POST an event: the URL, the auth scheme with its secrets opened
    (`SecretStr` fields), the signing secrets to sign with (newest first). Its repr shows the id only."""

    subscription_id: str
    client_key: str
    url: str
    auth: ApiKeysAuth | BasicAuth | OAuth2ClientCredentialsAuth
    signing_secrets: tuple[str, ...]
    enabled: bool
    deleted: bool

    @property
    def auth_type(self) -> str:
        return self.auth.type

    @property
    def active(self) -> bool:
        """Deliveries go out only while the subscription is enabled and not deleted."""
        return self.enabled and not self.deleted

    def __repr__(self) -> str:
        return f"SubscriptionSecrets({self.subscription_id}, {self.auth.type}, active={self.active})"


# -- what the API does ---------------------------------------------------------------------------------------


async def create_subscription(
    database: Database, client_key: str, request: SubscriptionCreate, *, now: datetime | None = None
) -> SubscriptionCreated:
    """Store a new subscription of `client_key`; the answer holds its signing secret (shown this once)."""
    sealer = sealer_of(database)
    now = now or datetime.now(UTC)
    subscription_id = f"sub_{uuid.uuid4().hex}"
    secret = new_signing_secret()
    values = {
        "subscription_id": subscription_id,
        "client_key": client_key,
        "url": request.url,
        "event_types": list(request.event_types),
        "states": [state.value for state in request.states] if request.states is not None else None,
        **seal_auth(sealer, subscription_id, request.auth),
        "signing_sealed": seal_signing(sealer, subscription_id, [{"secret": secret, "expiresAt": None}]),
        "enabled": request.enabled,
        "created_at": now,
        "updated_at": now,
    }
    async with database.engine.begin() as connection:
        await connection.execute(_table.insert().values(values))
    return SubscriptionCreated(**_view(values).model_dump(), signing_secret=secret)


async def get_subscription(database: Database, subscription_id: str) -> StoredSubscription | None:
    """The subscription, unless unknown or deleted."""
    async with database.engine.connect() as connection:
        row = await _live_row(connection, subscription_id)
    return StoredSubscription(_view(row._mapping), row.client_key) if row is not None else None


async def list_subscriptions(
    database: Database, *, client_key: str | None, limit: int, after: tuple[datetime, str] | None = None
) -> list[tuple[SubscriptionView, datetime]]:
    """Newest first, deleted ones left out; `client_key` None: everyone's. `after`: the (created_at,
    subscription_id) of the previous page's last row."""
    query = select(_table).where(_columns.deleted_at.is_(None))
    if client_key is not None:
        query = query.where(_columns.client_key == client_key)
    if after is not None:
        created_at, subscription_id = after
        query = query.where(
            (_columns.created_at < created_at)
            | ((_columns.created_at == created_at) & (_columns.subscription_id < subscription_id))
        )
    query = query.order_by(_columns.created_at.desc(), _columns.subscription_id.desc()).limit(limit)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [(_view(row._mapping), row.created_at) for row in rows]


async def update_subscription(
    database: Database, subscription_id: str, patch: SubscriptionUpdate, *, now: datetime | None = None
) -> tuple[SubscriptionView, list[OpenDelivery]] | None:
    """Apply the fields sent; None if unknown or deleted. Disabling cancels the open deliveries in the same
    transaction; they are returned so that their workflows are cancelled too."""
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {"updated_at": now}
    fields = patch.model_fields_set
    if "url" in fields and patch.url is not None:
        values["url"] = patch.url
    if "event_types" in fields and patch.event_types is not None:
        values["event_types"] = list(patch.event_types)
    if "states" in fields:
        values["states"] = [state.value for state in patch.states] if patch.states is not None else None
    if "auth" in fields and patch.auth is not None:
        values.update(seal_auth(sealer_of(database), subscription_id, patch.auth))
    if "enabled" in fields and patch.enabled is not None:
        values["enabled"] = patch.enabled
    async with database.engine.begin() as connection:
        updated = await connection.execute(
            update(_table)
            .where((_columns.subscription_id == subscription_id) & _columns.deleted_at.is_(None))
            .values(values)
        )
        if not updated.rowcount:
            return None
        cancelled = (
            await _cancel_open_deliveries(connection, subscription_id, now) if values.get("enabled") is False else []
        )
        row = await _live_row(connection, subscription_id)
    assert row is not None  # updated in this transaction
    return _view(row._mapping), cancelled


async def delete_subscription(
    database: Database, subscription_id: str, *, now: datetime | None = None
) -> list[OpenDelivery] | None:
    """Soft delete (the deliveries keep their subscription's id); its open deliveries cancelled in the same
    transaction and returned. None if unknown or already deleted."""
    now = now or datetime.now(UTC)
    async with database.engine.begin() as connection:
        deleted = await connection.execute(
            update(_table)
            .where((_columns.subscription_id == subscription_id) & _columns.deleted_at.is_(None))
            .values(deleted_at=now, updated_at=now, enabled=False)
        )
        if not deleted.rowcount:
            return None
        return await _cancel_open_deliveries(connection, subscription_id, now)


async def rotate_signing_secret(
    database: Database, subscription_id: str, *, now: datetime | None = None
) -> SigningSecretRotated | None:
    """A new signing secret, first; the previous ones stay valid for `SIGNING_OVERLAP` (an earlier expiry is kept),
    expired ones are dropped. Two concurrent rotations both take effect (compare-and-set, retried). None if unknown
    or deleted."""
    sealer = sealer_of(database)
    now = now or datetime.now(UTC)
    for _ in range(10):
        # read, then compare-and-set in a transaction of its own: a SQLite reader cannot become a writer once
        # another has written (SQLITE_BUSY_SNAPSHOT), but a transaction that only writes queues for the lock
        async with database.engine.connect() as connection:
            row = await _live_row(connection, subscription_id)
        if row is None:
            return None
        kept = []
        for entry in open_signing(sealer, subscription_id, row.signing_sealed):
            expires = signing_expiry(entry)
            if expires is None or expires > now:
                limit = now + SIGNING_OVERLAP
                kept.append({"secret": entry["secret"], "expiresAt": min(expires or limit, limit).isoformat()})
        secret = new_signing_secret()
        sealed = seal_signing(sealer, subscription_id, [{"secret": secret, "expiresAt": None}, *kept])
        unchanged = (
            (_columns.subscription_id == subscription_id)
            & _columns.deleted_at.is_(None)
            & (_columns.signing_sealed["data"].as_string() == row.signing_sealed["data"])
        )
        async with database.engine.begin() as connection:
            swapped = await connection.execute(
                update(_table).where(unchanged).values(signing_sealed=sealed, updated_at=now)
            )
        if swapped.rowcount:
            expiries = [datetime.fromisoformat(entry["expiresAt"]) for entry in kept]
            return SigningSecretRotated(
                subscription_id=subscription_id,
                signing_secret=secret,
                previous_secrets_expire_at=max(expiries) if expiries else None,
            )
    raise RuntimeError(f"the signing secret of {subscription_id} kept changing under the rotation")


# -- the outbox's and the delivery's reads -------------------------------------------------------------------


def matching_subscription_ids(connection: Connection, client_key: str, event_type: str, state: str) -> list[str]:
    """The subscriptions that want this event: `client_key`'s, enabled, not deleted, subscribed to `event_type`,
    and without a states filter or with `state` in it. Called by the outbox inside its transaction, so the event
    and its deliveries are written together. Oldest subscription first."""
    query = (
        select(_columns.subscription_id, _columns.event_types, _columns.states)
        .where((_columns.client_key == client_key) & _columns.enabled.is_(True) & _columns.deleted_at.is_(None))
        .order_by(_columns.created_at, _columns.subscription_id)
    )
    rows = connection.execute(query).all()
    # A client has a handful of subscriptions: filtering the JSON lists here is portable (SQLite, PostgreSQL).
    return [
        row.subscription_id
        for row in rows
        if event_type in (row.event_types or []) and (row.states is None or state in row.states)
    ]


async def load_subscription_for_delivery(
    database: Database, subscription_id: str, *, now: datetime | None = None
) -> SubscriptionSecrets | None:
    """The subscription with its secrets opened, deleted ones included (`deleted`, `active`: the activity then
    stops); None if unknown. `signing_secrets`: those valid at `now` (the wall clock by default), newest first.
    Raises `UnknownKeyError` (from the ring) when sealed under a key the ring no longer holds."""
    sealer = sealer_of(database)
    query = select(_table).where(_columns.subscription_id == subscription_id)
    row = await database.transaction(lambda connection: connection.execute(query).first())
    if row is None:
        return None
    now = now or datetime.now(UTC)
    secrets = open_auth(sealer, subscription_id, row.auth_sealed)
    auth = _AUTH.validate_python({"type": row.auth_type, **row.auth_public, **secrets})
    signing = [
        entry["secret"]
        for entry in open_signing(sealer, subscription_id, row.signing_sealed)
        if (signing_expiry(entry) or now + SIGNING_OVERLAP) > now
    ]
    return SubscriptionSecrets(
        subscription_id=subscription_id,
        client_key=row.client_key,
        url=row.url,
        auth=auth,
        signing_secrets=tuple(signing),
        enabled=bool(row.enabled),
        deleted=row.deleted_at is not None,
    )


# -- helpers -------------------------------------------------------------------------------------------------


def _auth_view(auth_type: str, public: dict[str, Any]) -> SubscriptionAuthView:
    if auth_type == "api_keys":
        return ApiKeysAuthView(headers=dict.fromkeys(public["headers"], "***"))
    if auth_type == "basic":
        return BasicAuthView(username=public["username"])
    return OAuth2ClientCredentialsAuthView(
        client_id=public["clientId"], token_url=public["tokenUrl"], scope=public.get("scope")
    )


def _view(row: Any) -> SubscriptionView:
    return SubscriptionView(
        subscription_id=row["subscription_id"],
        url=row["url"],
        event_types=list(row["event_types"]),
        states=row["states"],
        auth=_auth_view(row["auth_type"], row["auth_public"]),
        enabled=bool(row["enabled"]),
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
    )


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes: ours are all UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _live_row(connection: AsyncConnection, subscription_id: str) -> Row[Any] | None:
    query = select(_table).where((_columns.subscription_id == subscription_id) & _columns.deleted_at.is_(None))
    return (await connection.execute(query)).first()


async def _cancel_open_deliveries(
    connection: AsyncConnection, subscription_id: str, now: datetime
) -> list[OpenDelivery]:
    deliveries = webhook_deliveries.c
    open_ = (deliveries.subscription_id == subscription_id) & deliveries.status.in_(_OPEN)
    columns = (
        deliveries.delivery_id, deliveries.transfer_id, deliveries.subscription_id, deliveries.workflow_id,
        deliveries.dispatched_at,
    )  # fmt: skip
    rows = (await connection.execute(select(*columns).where(open_))).all()
    if rows:
        await connection.execute(
            update(webhook_deliveries)
            .where(open_)
            .values(status=DeliveryStatus.CANCELLED.value, updated_at=now, next_attempt_at=None)
        )
    return [OpenDelivery(row.delivery_id, workflow_of(row)) for row in rows]
