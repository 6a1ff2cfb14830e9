"""The webhooks' transactional outbox (DESIGN "Webhooks", emission): exactly one event per saved state.

* In the save's own transaction (`Database.save_transfer`), `EventWriter.write` inserts the state's event row (its id
  from (transferId, sequence), `ON CONFLICT DO NOTHING`: a re-run writes nothing) and one delivery row per
  subscription of the transfer's owner that wants it. Without any subscription of that owner this is one statement:
  the event insert's RETURNING tells whether the owner has one.
* After the commit, `Outbox.save` starts a `WebhookDeliveryWorkflow` (by name, on the webhooks' task queue) for each
  delivery of that transfer not yet started, then marks them started (both by `mojaflow.webhook_dispatch`). A start
  that finds the workflow there (running or closed) is success. A failed start is not retried here, so a Temporal
  hiccup never stalls a transfer: each worker's sweeper (`Outbox.sweeping`) starts what is left, also after a crash
  between the commit and the start.
* The state upsert's revision guard makes a re-run of a save a no-op; the re-run still dispatches (its event insert
  finds the row, so it looks for deliveries left unstarted).

Event rows hold no personal data: `PaymentStatus` has ids, states, amount and the reason of a failure, no party.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from mojaflow import webhook_subscriptions as _subscriptions  # a module: database.py imports us while it loads
from mojaflow.models import Direction, TransferRecord
from mojaflow.settings import Settings
from mojaflow.webhook_dispatch import DELIVERY_WORKFLOW, mark_dispatched, start_delivery
from mojaflow.webhook_models import EVENT_TYPE, DeliveryStatus, PaymentStatus, delivery_id, event_id
from mojaflow.webhook_tables import webhook_deliveries, webhook_events, webhook_subscriptions

if TYPE_CHECKING:
    from mojaflow.database import Database

__all__ = ["DELIVERY_WORKFLOW", "EventDefaults", "EventWriter", "Outbox", "PendingDelivery", "event_row"]

START_TIMEOUT_S = 2.0  # a save waits at most this for its starts; what did not start is the sweeper's
PAUSE_AFTER_FAILURE_S = 5.0  # then saves leave their starts to the sweeper for a while: no wait per state change
SWEEP_BATCH = 200
CRASH_EXIT_CODE = 70

log = logging.getLogger("mojaflow.webhooks")


@dataclass(frozen=True)
class EventDefaults:
    """What an event gets when its record says nothing: the owner (inbound and header-less transfers belong to the
    bank itself) and an inbound transfer's Money Movement headers. The defaults here are the settings' defaults."""

    client_key: str = "bank"
    inbound_product: str = "retail_payments"
    inbound_payment_channel: str = "csm"

    @classmethod
    def of(cls, settings: Settings) -> EventDefaults:
        return cls(settings.default_client_key, settings.inbound_product, settings.inbound_payment_channel)


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery whose workflow is to be started (as `DeliveryInput` names it)."""

    delivery_id: str
    event_id: str
    subscription_id: str
    transfer_id: str
    cycle: int = 1


def event_row(record: TransferRecord, defaults: EventDefaults, now: datetime) -> dict[str, Any]:
    """The outbox row of one saved state. `now` becomes `occurredAt`: the first write's, since a re-run's insert
    finds the row and changes nothing."""
    view = record.view
    inbound = view.direction is Direction.INBOUND
    status = PaymentStatus(
        transfer_id=view.transfer_id,
        home_transaction_id=view.home_transaction_id,
        direction=view.direction,
        previous_state=record.previous_state,
        current_state=view.current_state,
        sequence=record.sequence,
        amount=view.amount,
        currency=view.currency,
        last_error=view.last_error,
        occurred_at=now,
    )
    return {
        "event_id": event_id(view.transfer_id, record.sequence),
        "transfer_id": view.transfer_id,
        "sequence": record.sequence,
        "client_key": record.client_key or defaults.client_key,
        "event_type": EVENT_TYPE,
        "product": record.product or (defaults.inbound_product if inbound else None),
        "payment_channel": record.payment_channel or (defaults.inbound_payment_channel if inbound else None),
        "data": status.model_dump(mode="json", by_alias=True),
        "occurred_at": now,
    }


class EventWriter:
    """The outbox's statements, built once per database: the save is the transfers' hot path."""

    def __init__(self, insert: Any) -> None:
        subscribed = exists().where(
            (webhook_subscriptions.c.client_key == bindparam("owner"))
            & webhook_subscriptions.c.enabled.is_(True)
            & webhook_subscriptions.c.deleted_at.is_(None)
        )
        self._insert_event = (
            insert(webhook_events)
            .on_conflict_do_nothing(index_elements=[webhook_events.c.event_id])
            .returning(subscribed.label("subscribed"))
        )
        self._insert_deliveries = insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=[webhook_deliveries.c.delivery_id]
        )

    async def write(
        self, connection: AsyncConnection, record: TransferRecord, defaults: EventDefaults, now: datetime
    ) -> list[PendingDelivery] | None:
        """Insert the state's event and its deliveries: the deliveries written, or None if the event was there
        already (a re-run: its first run may have died before starting them, so they are to be looked up)."""
        row = event_row(record, defaults, now)
        written = (await connection.execute(self._insert_event, {**row, "owner": row["client_key"]})).first()
        if written is None:
            return None
        if not written.subscribed:
            return []
        state = record.view.current_state.value
        subscriptions = await _subscriptions.matching_subscription_ids(connection, row["client_key"], EVENT_TYPE, state)
        pending = [
            PendingDelivery(delivery_id(row["event_id"], sub), row["event_id"], sub, row["transfer_id"])
            for sub in subscriptions
        ]
        if pending:
            common = {"client_key": row["client_key"], "created_at": now, "updated_at": now}
            await connection.execute(
                self._insert_deliveries,
                [{**vars(each), **common, "status": DeliveryStatus.PENDING.value, "attempts": 0} for each in pending],
            )
        return pending


class Outbox:
    """Saves transfer states with their events and starts their deliveries; sweeps up what was left unstarted.

    One per process (the worker's save activity, the API's RECEIVED save). Without a Temporal client it only
    writes: the sweeper of some worker starts the deliveries.
    """

    def __init__(self, database: Database, client: Client | None, settings: Settings) -> None:
        self._db = database
        self._client = client
        self.defaults = EventDefaults.of(settings)
        self._task_queue = settings.webhook_task_queue
        self._crash_after_commit = settings.test_crash_after_outbox_commit
        self._sweep_interval = timedelta(seconds=settings.webhook_sweep_interval_s)
        self._paused_until = 0.0

    async def save(self, record: TransferRecord) -> bool:
        """Save the state with its event (one transaction), then start its deliveries. Idempotent: a re-run
        writes nothing new and starts what is still unstarted. True if the state was newer than the saved one.
        Raises what the database raises before the commit; nothing after it."""
        saved = await self._db.save_transfer_with_event(record, self.defaults)
        if saved.deliveries_waiting:
            if self._crash_after_commit:
                _crash()
            await self.dispatch(record.view.transfer_id, saved.deliveries if not saved.rerun else None)
        return saved.applied

    async def dispatch(self, transfer_id: str, deliveries: Sequence[PendingDelivery] | None = None) -> int:
        """Start these deliveries of a transfer (None: every one of it not yet started), at most `START_TIMEOUT_S`
        long; how many started. Never raises: what fails is left to the sweeper (and the next saves skip their
        starts for a while)."""
        if self._client is None or time.monotonic() < self._paused_until:
            return 0
        try:
            if deliveries is None:
                deliveries = await self._unstarted(webhook_deliveries.c.transfer_id == transfer_id)
            return await self._start(deliveries)
        except Exception as error:  # the database after the commit: the sweeper retries
            self._pause(f"{type(error).__name__} starting the deliveries of transfer {transfer_id}")
            return 0

    async def sweep(self, older_than: timedelta) -> int:
        """Start every unstarted delivery written more than `older_than` ago (a crash or a hiccup left it)."""
        if self._client is None:
            return 0
        started = 0
        while True:
            cutoff = datetime.now(UTC) - older_than
            rows = await self._unstarted(webhook_deliveries.c.created_at < cutoff, limit=SWEEP_BATCH)
            count = await self._start(rows)
            started += count
            if len(rows) < SWEEP_BATCH or count == 0:
                return started

    @asynccontextmanager
    async def sweeping(self) -> AsyncIterator[asyncio.Task[None]]:
        """Sweep every `MOJAFLOW_WEBHOOK_SWEEP_INTERVAL_S` until the block exits."""
        task = asyncio.create_task(self._sweep_forever(), name="webhook-outbox-sweeper")
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval.total_seconds())
            try:
                started = await self.sweep(self._sweep_interval)
            except Exception as error:  # the database down: the next sweep catches up
                log.warning("webhook sweeper: %s; next sweep in %.0f s", type(error).__name__,
                            self._sweep_interval.total_seconds())  # fmt: skip
            else:
                if started:
                    log.info("webhook sweeper started %d deliveries left unstarted", started)

    async def _unstarted(self, condition: Any, limit: int | None = None) -> Sequence[Any]:
        deliveries = webhook_deliveries.c
        columns = (deliveries.delivery_id, deliveries.event_id, deliveries.subscription_id, deliveries.transfer_id)
        query = (
            select(*columns, deliveries.cycle)
            .where(deliveries.dispatched_at.is_(None) & (deliveries.status == DeliveryStatus.PENDING.value) & condition)
            .order_by(deliveries.created_at, deliveries.delivery_id)
            .limit(limit)
        )
        async with self._db.engine.connect() as connection:
            return (await connection.execute(query)).all()

    async def _start(self, rows: Sequence[Any]) -> int:
        """Start these deliveries' workflows at once; mark those started. A failure pauses the saves' starts."""
        if not rows:
            return 0
        tasks = [asyncio.create_task(self._start_one(row)) for row in rows]
        done, pending = await asyncio.wait(tasks, timeout=START_TIMEOUT_S)
        for task in pending:
            task.cancel()
        started = [row for row, task in zip(rows, tasks, strict=True) if _succeeded(task, done)]
        if len(started) < len(rows):
            failures = {type(task.exception()).__name__ for task in done if task.exception() is not None}
            self._pause(f"{len(rows) - len(started)} of {len(rows)} starts failed ({', '.join(sorted(failures))}"
                        f"{', timed out' if pending else ''})")  # fmt: skip
        if started:
            await mark_dispatched(self._db, started)
        return len(started)

    async def _start_one(self, row: Any) -> None:
        assert self._client is not None
        await start_delivery(self._client, row, task_queue=self._task_queue, timeout_s=START_TIMEOUT_S)

    def _pause(self, reason: str) -> None:
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
        log.warning("webhook deliveries not started: %s; the sweeper will start them", reason)


def _succeeded(task: asyncio.Task[None], done: set[asyncio.Task[None]]) -> bool:
    return task in done and not task.cancelled() and task.exception() is None


def _crash() -> NoReturn:
    """`MOJAFLOW_TEST_CRASH_AFTER_OUTBOX_COMMIT`: die right between the commit and the starts, as a SIGKILL would
    (no cleanup, no finally), since a random kill almost never lands there."""
    log.critical("MOJAFLOW_TEST_CRASH_AFTER_OUTBOX_COMMIT: exiting between the outbox's commit and its dispatch")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)
