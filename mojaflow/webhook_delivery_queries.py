"""Webhook deliveries as the client API reads and restarts them: listings, one delivery with its attempts and its
event, and the row transitions of a manual retry (a new cycle) and a recovery.

A new cycle follows the outbox's own pattern: the row is first set to the next cycle, `PENDING` and undispatched
(so that the sweeper starts it if we die before starting it), then its workflow is started, then the row is marked
dispatched (both by `mojaflow.webhook_dispatch`). Each transition is a compare-and-set on (delivery, cycle, status):
two concurrent retries start one cycle, and a status the delivery activity already wrote is never overwritten.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from sqlalchemy import Row, select, update

from mojaflow.database import Database
from mojaflow.models import CamelModel
from mojaflow.webhook_models import DeliveryStatus, PaymentStatus, WebhookEvent, workflow_of
from mojaflow.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events

__all__ = [
    "AttemptView",
    "DeliveryDetail",
    "DeliveryView",
    "StoredDelivery",
    "get_delivery",
    "list_deliveries",
    "restart_failed_since",
    "restartable",
    "start_new_cycle",
]

_deliveries = webhook_deliveries.c
_RESTARTABLE = (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED)


class AttemptView(CamelModel):
    """One POST of a delivery, as the delivery activity recorded it."""

    cycle: int
    attempt: int = Field(description="1–73 within a cycle; manual attempts are numbered apart")
    manual: bool
    at: datetime = Field(description="When it was made (the workflow's time)")
    status_code: int | None = Field(default=None, description="The receiver's HTTP status; absent if none came")
    latency_ms: int | None = None
    error_class: str | None = Field(default=None, description="Why it failed when no status came (e.g. timeout)")
    response_excerpt: str | None = Field(default=None, description="The first 1 KB of the receiver's answer")


class DeliveryView(CamelModel):
    """One event to one subscription."""

    delivery_id: str
    event_id: str
    subscription_id: str
    transfer_id: str
    status: DeliveryStatus
    cycle: int = Field(description="1, then one more per manual retry of a finished delivery")
    attempts: int = Field(description="Attempts made in this cycle")
    created_at: datetime
    updated_at: datetime
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    workflow_id: str | None = Field(
        default=None, description="The delivery workflow of this cycle (the Temporal Web UI shows it); none before"
    )


class DeliveryDetail(DeliveryView):
    event: WebhookEvent | None = Field(default=None, description="The event as it is POSTed")
    attempt_log: list[AttemptView] = Field(default_factory=list, description="Every attempt, oldest first")


class StoredDelivery:
    """A delivery row with its owner, for the API's scoping and retries."""

    def __init__(self, view: DeliveryView, client_key: str) -> None:
        self.view = view
        self.client_key = client_key


def restartable(status: DeliveryStatus) -> bool:
    """A finished delivery (failed, delivered or cancelled) may be sent again in a new cycle."""
    return status in _RESTARTABLE


async def list_deliveries(
    database: Database,
    *,
    client_key: str | None,
    subscription_id: str | None = None,
    event_id: str | None = None,
    transfer_id: str | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 50,
    after: tuple[datetime, str] | None = None,
) -> list[tuple[DeliveryView, datetime]]:
    """Newest first; `client_key` None: everyone's; `after`: the previous page's last (created_at, delivery_id)."""
    query = select(webhook_deliveries)
    for column, wanted in (
        (_deliveries.client_key, client_key),
        (_deliveries.subscription_id, subscription_id),
        (_deliveries.event_id, event_id),
        (_deliveries.transfer_id, transfer_id),
        (_deliveries.status, status.value if status else None),
    ):
        if wanted is not None:
            query = query.where(column == wanted)
    if after is not None:
        created_at, delivery_id = after
        query = query.where(
            (_deliveries.created_at < created_at)
            | ((_deliveries.created_at == created_at) & (_deliveries.delivery_id < delivery_id))
        )
    query = query.order_by(_deliveries.created_at.desc(), _deliveries.delivery_id.desc()).limit(limit)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [(_view(row), row.created_at) for row in rows]


async def get_delivery(database: Database, delivery_id: str, *, detail: bool = False) -> StoredDelivery | None:
    """The delivery; with `detail`, its event and every attempt (a `DeliveryDetail`)."""
    async with database.engine.connect() as connection:
        row = (
            await connection.execute(select(webhook_deliveries).where(_deliveries.delivery_id == delivery_id))
        ).first()
        if row is None:
            return None
        if not detail:
            return StoredDelivery(_view(row), row.client_key)
        event = (
            await connection.execute(select(webhook_events).where(webhook_events.c.event_id == row.event_id))
        ).first()
        attempts = (
            await connection.execute(
                select(webhook_attempts)
                .where(webhook_attempts.c.delivery_id == delivery_id)
                .order_by(webhook_attempts.c.at, webhook_attempts.c.cycle, webhook_attempts.c.attempt)
            )
        ).all()
    view = DeliveryDetail(
        **_view(row).model_dump(),
        event=_event(event) if event is not None else None,
        attempt_log=[_attempt(attempt) for attempt in attempts],
    )
    return StoredDelivery(view, row.client_key)


_NEXT_CYCLE = {
    "cycle": _deliveries.cycle + 1,
    "status": DeliveryStatus.PENDING.value,
    "attempts": 0,
    "dispatched_at": None,
    "next_attempt_at": None,
    "workflow_id": None,
}


async def start_new_cycle(database: Database, delivery_id: str, from_cycle: int, *, orphaned: bool = False) -> bool:
    """Set a finished delivery to cycle `from_cycle + 1`, `PENDING`, undispatched, no attempts yet. False if it is
    no longer finished in `from_cycle` (another retry, or the activity, moved it meanwhile). `orphaned`: also a
    `DELIVERING` one, whose workflow is known to be gone (terminated by hand, say)."""
    statuses = [status.value for status in _RESTARTABLE]
    if orphaned:
        statuses.append(DeliveryStatus.DELIVERING.value)
    result = await _execute(
        database,
        update(webhook_deliveries)
        .where(
            (_deliveries.delivery_id == delivery_id)
            & (_deliveries.cycle == from_cycle)
            & _deliveries.status.in_(statuses)
        )
        .values(**_NEXT_CYCLE, updated_at=datetime.now(UTC)),
    )
    return bool(result)


async def restart_failed_since(database: Database, subscription_id: str, since: datetime) -> list[DeliveryView]:
    """Every `FAILED` delivery of the subscription created at or after `since` set to its next cycle, as
    `start_new_cycle` does, in one transaction; their views in the new cycle, oldest first. Once this commits, the
    sweeper starts whichever workflow the caller does not."""
    now = datetime.now(UTC)
    failed = (
        (_deliveries.subscription_id == subscription_id)
        & (_deliveries.status == DeliveryStatus.FAILED.value)
        & (_deliveries.created_at >= since.astimezone(UTC))
    )
    async with database.engine.begin() as connection:
        rows = (
            await connection.execute(
                select(webhook_deliveries).where(failed).order_by(_deliveries.created_at, _deliveries.delivery_id)
            )
        ).all()
        if rows:
            await connection.execute(update(webhook_deliveries).where(failed).values(**_NEXT_CYCLE, updated_at=now))
    views = [_view(row) for row in rows]
    return [
        view.model_copy(update={"cycle": view.cycle + 1, "status": DeliveryStatus.PENDING, "attempts": 0,
                                "updated_at": now, "next_attempt_at": None, "workflow_id": None})
        for view in views
    ]  # fmt: skip


async def _execute(database: Database, statement: Any) -> int:
    async with database.engine.begin() as connection:
        return int((await connection.execute(statement)).rowcount)


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes: ours are all UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _maybe(value: datetime | None) -> datetime | None:
    return _aware(value) if value is not None else None


def _view(row: Row[Any]) -> DeliveryView:
    return DeliveryView(
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        subscription_id=row.subscription_id,
        transfer_id=row.transfer_id,
        status=DeliveryStatus(row.status),
        cycle=row.cycle,
        attempts=row.attempts,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        last_attempt_at=_maybe(row.last_attempt_at),
        next_attempt_at=_maybe(row.next_attempt_at),
        workflow_id=workflow_of(row),
    )


def _event(row: Row[Any]) -> WebhookEvent:
    return WebhookEvent(id=row.event_id, data=PaymentStatus.model_validate(row.data))


def _attempt(row: Row[Any]) -> AttemptView:
    return AttemptView(
        cycle=row.cycle,
        attempt=row.attempt,
        manual=bool(row.manual),
        at=_aware(row.at),
        status_code=row.status_code,
        latency_ms=row.latency_ms,
        error_class=row.error_class,
        response_excerpt=row.response_excerpt,
    )
