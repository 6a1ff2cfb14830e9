"""The store of webhook deliveries: what an attempt reads (the delivery with its event), what it writes (the
attempt, the delivery's status and counters) and the OAuth2 tokens shared by every worker process.

Every write is idempotent: an attempt is keyed by (delivery, cycle, attempt), so a re-run after a crash rewrites
its row and counters instead of adding to them, and a status only moves forward within a cycle (a final
DELIVERED, FAILED or CANCELLED is never overwritten by a late attempt of the same cycle; a newer cycle restarts).

    async with database.engine.begin() as connection:          # e.g. a test standing in for the outbox
        await insert_event(connection, event, client_key="bank1", product=..., payment_channel=...)
        delivery = await insert_delivery(connection, event_id=event.id, subscription_id=..., ...)
    pending = await load_delivery(database, delivery)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mojaflow.database import Database
from mojaflow.webhook_models import EVENT_TYPE, DeliveryStatus, WebhookEvent, delivery_id
from mojaflow.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events, webhook_oauth_tokens

__all__ = [
    "MANUAL_ATTEMPT_BASE",
    "AttemptRecord",
    "PendingDelivery",
    "forget_oauth_token",
    "insert_delivery",
    "insert_event",
    "load_delivery",
    "load_oauth_token",
    "mark_delivery",
    "record_attempt",
    "save_oauth_token",
]

# Scheduled attempts are numbered 1..73 in a cycle (attempt k is due k-1 hours after the first); a manual one
# ("retry now", which does not shorten the 73) is numbered MANUAL_ATTEMPT_BASE + n, apart from them.
MANUAL_ATTEMPT_BASE = 1000
_FINAL = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, DeliveryStatus.CANCELLED.value)


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery as an attempt needs it: its state, the POST's Money Movement fields and the exact body."""

    delivery_id: str
    event_id: str
    subscription_id: str
    transfer_id: str
    client_key: str
    status: DeliveryStatus
    cycle: int
    product: str | None
    payment_channel: str | None
    body: bytes  # the envelope {"id", "event_type", "data"} as posted (and signed)


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as recorded: no secret, no response body beyond 1 KB."""

    delivery_id: str
    cycle: int
    attempt: int
    manual: bool
    at: datetime  # from the workflow
    status: DeliveryStatus  # the delivery's status after this attempt
    next_attempt_at: datetime | None
    status_code: int | None = None
    latency_ms: int | None = None
    error_class: str | None = None
    response_excerpt: str | None = None


def _insert(connection: AsyncConnection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


async def insert_event(
    connection: AsyncConnection,
    event: WebhookEvent,
    *,
    client_key: str,
    product: str | None,
    payment_channel: str | None,
) -> bool:
    """Write the event (the outbox row) unless it is there; True when written."""
    data = event.data
    statement = (
        _insert(connection)(webhook_events)
        .values(
            event_id=event.id,
            transfer_id=data.transfer_id,
            sequence=data.sequence,
            client_key=client_key,
            event_type=event.event_type,
            product=product,
            payment_channel=payment_channel,
            data=data.model_dump(mode="json", by_alias=True, exclude_none=True),
            occurred_at=data.occurred_at,
        )
        .on_conflict_do_nothing()
    )
    return bool((await connection.execute(statement)).rowcount)


async def insert_delivery(
    connection: AsyncConnection, *, event_id: str, subscription_id: str, transfer_id: str, client_key: str
) -> str:
    """Write the PENDING delivery of an event to a subscription unless it is there; its id either way."""
    identifier = delivery_id(event_id, subscription_id)
    now = datetime.now(UTC)
    statement = (
        _insert(connection)(webhook_deliveries)
        .values(
            delivery_id=identifier,
            event_id=event_id,
            subscription_id=subscription_id,
            transfer_id=transfer_id,
            client_key=client_key,
            status=DeliveryStatus.PENDING.value,
            cycle=1,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    await connection.execute(statement)
    return identifier


_LOAD = select(
    webhook_deliveries.c.delivery_id,
    webhook_deliveries.c.event_id,
    webhook_deliveries.c.subscription_id,
    webhook_deliveries.c.transfer_id,
    webhook_deliveries.c.client_key,
    webhook_deliveries.c.status,
    webhook_deliveries.c.cycle,
    webhook_events.c.product,
    webhook_events.c.payment_channel,
    webhook_events.c.event_type,
    webhook_events.c.data,
).join(webhook_events, webhook_events.c.event_id == webhook_deliveries.c.event_id)


async def load_delivery(database: Database, delivery: str) -> PendingDelivery | None:
    async with database.engine.connect() as connection:
        row = (await connection.execute(_LOAD.where(webhook_deliveries.c.delivery_id == delivery))).first()
    if row is None:
        return None
    envelope = {"id": row.event_id, "event_type": row.event_type or EVENT_TYPE, "data": row.data}
    return PendingDelivery(
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        subscription_id=row.subscription_id,
        transfer_id=row.transfer_id,
        client_key=row.client_key,
        status=DeliveryStatus(row.status),
        cycle=row.cycle,
        product=row.product,
        payment_channel=row.payment_channel,
        body=json.dumps(envelope, separators=(",", ":")).encode(),
    )


def _this_cycle_open(delivery: str, cycle: int) -> Any:
    """The delivery's row while this cycle may still change it: an older cycle, or this one not yet final."""
    columns = webhook_deliveries.c
    return and_(
        columns.delivery_id == delivery,
        or_(columns.cycle < cycle, and_(columns.cycle == cycle, columns.status.not_in(_FINAL))),
    )


async def record_attempt(database: Database, record: AttemptRecord) -> None:
    """Write the attempt (rewritten if this attempt ran before) and the delivery's status and counters."""
    insert = _insert_for_engine(database)(webhook_attempts).values(
        delivery_id=record.delivery_id,
        cycle=record.cycle,
        attempt=record.attempt,
        manual=record.manual,
        at=record.at,
        status_code=record.status_code,
        latency_ms=record.latency_ms,
        error_class=record.error_class,
        response_excerpt=record.response_excerpt,
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[webhook_attempts.c.delivery_id, webhook_attempts.c.cycle, webhook_attempts.c.attempt],
        set_={name: insert.excluded[name] for name in ("manual", "at", "status_code", "latency_ms",
                                                      "error_class", "response_excerpt")},
    )  # fmt: skip
    changes: dict[str, Any] = {
        "status": record.status.value,
        "cycle": record.cycle,
        "last_attempt_at": record.at,
        "next_attempt_at": record.next_attempt_at,
        "updated_at": datetime.now(UTC),
    }
    if not record.manual:
        changes["attempts"] = record.attempt  # scheduled attempts made in this cycle: a re-run counts once
    async with database.engine.begin() as connection:
        await connection.execute(upsert)
        await connection.execute(
            update(webhook_deliveries).where(_this_cycle_open(record.delivery_id, record.cycle)).values(**changes)
        )


async def mark_delivery(database: Database, delivery: str, cycle: int, status: DeliveryStatus) -> bool:
    """Set a delivery's status for this cycle unless it is already final in it; True when changed."""
    statement = (
        update(webhook_deliveries)
        .where(_this_cycle_open(delivery, cycle))
        .values(status=status.value, cycle=cycle, next_attempt_at=None, updated_at=datetime.now(UTC))
    )
    async with database.engine.begin() as connection:
        return bool((await connection.execute(statement)).rowcount)


# -- OAuth2 access tokens: one per subscription, sealed with the secrets ring ------------------------------------


def _token_context(subscription_id: str) -> str:
    return f"webhook-oauth-token:{subscription_id}"  # binds the sealed token to its row


async def load_oauth_token(database: Database, subscription_id: str, *, now: datetime) -> tuple[str, datetime] | None:
    """The cached access token and when to stop using it, if one is still good at `now`. None without a ring."""
    if database.sealer is None:
        return None
    query = select(webhook_oauth_tokens.c.token_sealed, webhook_oauth_tokens.c.expires_at).where(
        webhook_oauth_tokens.c.subscription_id == subscription_id
    )
    async with database.engine.connect() as connection:
        row = (await connection.execute(query)).first()
    if row is None:
        return None
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)  # SQLite: naive
    if expires_at <= now:
        return None
    opened = database.sealer.open(dict(row.token_sealed), context=_token_context(subscription_id))
    return str(opened["accessToken"]), expires_at


async def save_oauth_token(database: Database, subscription_id: str, token: str, expires_at: datetime) -> None:
    """Keep the token for every process until `expires_at` (already short of the server's expiry). A database
    without a secrets ring keeps none: tokens are secrets."""
    if database.sealer is None:
        return
    sealed = database.sealer.seal({"accessToken": token}, context=_token_context(subscription_id))
    insert = _insert_for_engine(database)(webhook_oauth_tokens).values(
        subscription_id=subscription_id, token_sealed=sealed, expires_at=expires_at
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[webhook_oauth_tokens.c.subscription_id],
        set_={"token_sealed": insert.excluded.token_sealed, "expires_at": insert.excluded.expires_at},
    )
    async with database.engine.begin() as connection:
        await connection.execute(upsert)


async def forget_oauth_token(database: Database, subscription_id: str, token: str) -> None:
    """Drop the token the receiver refused (a 401); a fresher one another process saved meanwhile stays."""
    if database.sealer is None:
        return
    columns = webhook_oauth_tokens.c
    async with database.engine.begin() as connection:
        row = (
            await connection.execute(select(columns.token_sealed).where(columns.subscription_id == subscription_id))
        ).first()
        if row is None:
            return
        stored = database.sealer.open(dict(row.token_sealed), context=_token_context(subscription_id))
        if stored["accessToken"] == token:
            await connection.execute(delete(webhook_oauth_tokens).where(columns.subscription_id == subscription_id))


def _insert_for_engine(database: Database) -> Any:
    return postgresql.insert if database.engine.dialect.name == "postgresql" else sqlite.insert
