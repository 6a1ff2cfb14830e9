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

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from mojaflow.database import Database
from mojaflow.keys import UnknownKeyError
from mojaflow.webhook_models import EVENT_TYPE, DeliveryStatus, WebhookEvent, delivery_id
from mojaflow.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events, webhook_oauth_tokens

__all__ = [
    "MANUAL_ATTEMPT_BASE",
    "AttemptRecord",
    "PendingDelivery",
    "forget_oauth_token",
    "insert_delivery",
    "insert_event",
    "load_deliveries",
    "load_oauth_token",
    "mark_delivery",
    "record_attempts",
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
    connection: AsyncConnection,
    *,
    event_id: str,
    subscription_id: str,
    transfer_id: str,
    client_key: str,
    dispatched: bool = False,
) -> str:
    """Write the PENDING delivery of an event to a subscription unless it is there; its id either way.
    `dispatched`: the caller starts its workflow itself (a test, the bench), so the outbox's sweeper leaves it."""
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
            dispatched_at=now if dispatched else None,
        )
        .on_conflict_do_nothing()
    )
    await connection.execute(statement)
    return identifier


# The statements of every attempt are built once and only bound per call (building one costs more CPU than
# running it): a delivery costs a few milliseconds of worker CPU at most (DESIGN, "Webhooks").
_LOAD = (
    select(
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
    )
    .join(webhook_events, webhook_events.c.event_id == webhook_deliveries.c.event_id)
    .where(webhook_deliveries.c.delivery_id.in_(bindparam("b_deliveries", expanding=True)))
)
# The delivery's row while this cycle may still change it: an older cycle, or this one not yet final.
_THIS_CYCLE_OPEN = and_(
    webhook_deliveries.c.delivery_id == bindparam("b_delivery"),
    or_(
        webhook_deliveries.c.cycle < bindparam("b_cycle"),
        and_(
            webhook_deliveries.c.cycle == bindparam("b_cycle"),
            *(webhook_deliveries.c.status != final for final in _FINAL),  # not NOT IN: these run as executemany
        ),
    ),
)
_ATTEMPTED: dict[str, Any] = {
    "status": bindparam("b_status"),
    "cycle": bindparam("b_cycle"),
    "last_attempt_at": bindparam("b_at"),
    "next_attempt_at": bindparam("b_next"),
    "updated_at": bindparam("b_now"),
    "workflow_id": func.coalesce(bindparam("b_workflow"), webhook_deliveries.c.workflow_id),
}
_RECORD_MANUAL = update(webhook_deliveries).where(_THIS_CYCLE_OPEN).values(**_ATTEMPTED)
_RECORD_SCHEDULED = _RECORD_MANUAL.values(attempts=bindparam("b_attempt"))  # a re-run of an attempt counts once
_MARK = (
    update(webhook_deliveries)
    .where(_THIS_CYCLE_OPEN)
    .values(
        status=bindparam("b_status"), cycle=bindparam("b_cycle"), next_attempt_at=None, updated_at=bindparam("b_now")
    )
)
_ATTEMPT_FIELDS = ("manual", "at", "status_code", "latency_ms", "error_class", "response_excerpt")


def _attempt_upsert(insert: Any) -> Any:
    statement = insert(webhook_attempts)
    return statement.on_conflict_do_update(
        index_elements=[webhook_attempts.c.delivery_id, webhook_attempts.c.cycle, webhook_attempts.c.attempt],
        set_={name: statement.excluded[name] for name in _ATTEMPT_FIELDS},
    )


_ATTEMPT_UPSERT = {"postgresql": _attempt_upsert(postgresql.insert), "sqlite": _attempt_upsert(sqlite.insert)}


async def load_deliveries(database: Database, deliveries: list[str]) -> dict[str, PendingDelivery]:
    """These deliveries with their events, by id (unknown ones left out): one query for a workflow's batch."""
    rows = await database.transaction(lambda connection: connection.execute(_LOAD, {"b_deliveries": deliveries}).all())
    return {row.delivery_id: _pending(row) for row in rows}


def _pending(row: Any) -> PendingDelivery:
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


async def record_attempts(database: Database, records: list[AttemptRecord], *, workflow_id: str | None = None) -> None:
    """Write the attempts (each rewritten if it ran before) and their deliveries' statuses and counters, in one
    transaction; `workflow_id`: the workflow that made them (it holds the deliveries' cycle)."""
    if not records:
        return
    now = datetime.now(UTC)
    attempts = [
        {
            "delivery_id": record.delivery_id,
            "cycle": record.cycle,
            "attempt": record.attempt,
            "manual": record.manual,
            "at": record.at,
            "status_code": record.status_code,
            "latency_ms": record.latency_ms,
            "error_class": record.error_class,
            "response_excerpt": record.response_excerpt,
        }
        for record in records
    ]
    updates = {
        manual: [
            {
                "b_delivery": record.delivery_id,
                "b_cycle": record.cycle,
                "b_status": record.status.value,
                "b_at": record.at,
                "b_next": record.next_attempt_at,
                "b_now": now,
                "b_attempt": record.attempt,
                "b_workflow": workflow_id,
            }
            for record in records
            if record.manual is manual
        ]
        for manual in (False, True)
    }

    def record(connection: Connection) -> None:
        connection.execute(_ATTEMPT_UPSERT[connection.dialect.name], attempts)
        for manual, params in updates.items():
            if params:
                connection.execute(_RECORD_MANUAL if manual else _RECORD_SCHEDULED, params)

    async with _writing(database):
        await database.transaction(record)


async def mark_delivery(database: Database, delivery: str, cycle: int, status: DeliveryStatus) -> bool:
    """Set a delivery's status for this cycle unless it is already final in it; True when changed."""
    values = {"b_delivery": delivery, "b_cycle": cycle, "b_status": status.value, "b_now": datetime.now(UTC)}
    async with _writing(database):
        return await database.transaction(lambda connection: bool(connection.execute(_MARK, values).rowcount))


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
    try:
        opened = database.sealer.open(dict(row.token_sealed), context=_token_context(subscription_id))
    except UnknownKeyError:  # sealed under a key rotated out of the ring: only a cache, fetched again
        return None
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


_WRITE_LOCKS: dict[int, asyncio.Lock] = {}


def _writing(database: Database) -> Any:
    """SQLite has one writer at a time, and a writer that finds it taken sleeps in back-off steps: concurrent
    attempts of one process queue here instead (PostgreSQL: no wait)."""
    if database.engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    return _WRITE_LOCKS.setdefault(id(database.engine), asyncio.Lock())


def _insert_for_engine(database: Database) -> Any:
    return postgresql.insert if database.engine.dialect.name == "postgresql" else sqlite.insert
