"""The webhooks' transactional outbox (DESIGN "Webhooks", emission): exactly one event per saved state, and its
deliveries handed to their workflows.

* `Outbox.save` saves a transfer's state with its event and deliveries in one transaction (the rows:
  `mojaflow.webhook_outbox_rows`), then hands that transfer's new deliveries to the process's dispatcher and
  returns: the save never waits for Temporal.
* The dispatcher goes in rounds, at most one per `DISPATCH_LINGER_S`, so that the states saved meanwhile, of every
  transfer, travel together: each subscriber's share of them is one batch, one `WebhookDeliveryWorkflow`
  (signal-with-start, by name, on the webhooks' task queue: `mojaflow.webhook_dispatch`), and they are marked
  dispatched. Each round also claims the deliveries written by a process that does not dispatch (the client API's
  RECEIVED save: rows that name no workflow), so those travel in the next round too rather than waiting for the
  transfer's first save in a worker, which under load comes a second later. A workflow ignores a delivery it has,
  so dispatching twice is harmless.
* A failed dispatch is not retried here, so a Temporal hiccup never stalls a transfer: each worker's sweeper
  (`Outbox.sweeping`) dispatches what is left, also after a crash between the commit and the dispatch.
* The state upsert's revision guard makes a re-run of a save a no-op; the re-run still dispatches (its event insert
  finds the row, so it looks for the deliveries it wrote claimed and left undispatched).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import select
from temporalio.client import Client

from mojaflow.metrics import count_state_change
from mojaflow.models import TransferRecord, TransferState
from mojaflow.settings import Settings
from mojaflow.webhook_dispatch import batches, claim, dispatch_batch, mark_dispatched
from mojaflow.webhook_models import DeliveryBatch, DeliveryStatus
from mojaflow.webhook_outbox_rows import EventDefaults, PendingDelivery, delivery_item
from mojaflow.webhook_tables import webhook_deliveries, webhook_events

if TYPE_CHECKING:
    from mojaflow.database import Database

__all__ = ["Outbox"]

DISPATCH_LINGER_S = 0.3  # the states saved within this, of every transfer, go to one workflow per subscriber
START_TIMEOUT_S = 10.0  # for a round of signal-with-starts (no save waits for it); what did not make it: the sweeper
PAUSE_AFTER_FAILURE_S = 5.0  # then the dispatcher leaves new deliveries to the sweeper for a while
SWEEP_BATCH = 200
CRASH_EXIT_CODE = 70

log = logging.getLogger("mojaflow.webhooks")


class Outbox:
    """Saves transfer states with their events and dispatches their deliveries; sweeps up what was left behind.

    One per process (the worker's save activity, the API's RECEIVED save). Without a Temporal client it only
    writes, unclaimed: the next round of some worker's dispatcher claims them (its sweeper, should none come).
    """

    def __init__(self, database: Database, client: Client | None, settings: Settings) -> None:
        self._db = database
        self._client = client
        self.defaults = EventDefaults.of(settings)
        self._task_queue = settings.webhook_task_queue
        self._crash_after_commit = settings.test_crash_after_outbox_commit
        self._sweep_interval = timedelta(seconds=settings.webhook_sweep_interval_s)
        self._paused_until = 0.0
        self._waiting: list[PendingDelivery] = []  # for the dispatcher's next round
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def database(self) -> Database:
        return self._db

    async def save(self, record: TransferRecord) -> bool:
        """Save the state with its event (one transaction), then hand its deliveries to the dispatcher. Idempotent:
        a re-run writes nothing new and dispatches what is still undispatched. True if the state was newer than the
        saved one. Raises what the database raises before the commit; nothing after it."""
        saved = await self._db.save_transfer_with_event(record, self.defaults, dispatching=self._client is not None)
        if not saved.rerun:  # its event row is new in this commit: a state's first save, counted once
            count_state_change(record)
        if saved.deliveries_waiting:
            if self._crash_after_commit:
                _crash()
            if saved.rerun:
                await self.dispatch(record.view.transfer_id)
            else:
                self._hand_over(saved.deliveries)
        return saved.applied

    async def dispatch(self, transfer_id: str) -> int:
        """Dispatch now every undispatched delivery of a transfer that a dispatching writer claimed (the client
        API's, unclaimed, are for the rounds to claim); how many. Never raises: what fails is left to the sweeper."""
        if self._client is None or time.monotonic() < self._paused_until:
            return 0
        deliveries = webhook_deliveries.c
        try:
            mine = (deliveries.transfer_id == transfer_id) & deliveries.workflow_id.is_not(None)
            return await self._dispatch(await self._undispatched(mine))
        except Exception as error:  # the database after the commit: the sweeper retries
            self._pause(f"{type(error).__name__} dispatching the deliveries of transfer {transfer_id}")
            return 0

    async def sweep(self, older_than: timedelta) -> int:
        """Dispatch every undispatched delivery written more than `older_than` ago (a crash or a hiccup left it)."""
        if self._client is None:
            return 0
        dispatched = 0
        while True:
            cutoff = datetime.now(UTC) - older_than
            pending = await self._undispatched(webhook_deliveries.c.created_at < cutoff, limit=SWEEP_BATCH)
            count = await self._dispatch(pending)
            dispatched += count
            if len(pending) < SWEEP_BATCH or count == 0:
                return dispatched

    @asynccontextmanager
    async def sweeping(self) -> AsyncIterator[asyncio.Task[None]]:
        """Sweep now and every `MOJAFLOW_WEBHOOK_SWEEP_INTERVAL_S` until the block exits; then stop the
        dispatcher."""
        task = asyncio.create_task(self._sweep_forever(), name="webhook-outbox-sweeper")
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the dispatcher; what it had not dispatched yet is the sweeper's."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None

    def _hand_over(self, deliveries: Sequence[PendingDelivery]) -> None:
        if self._client is None or not deliveries or time.monotonic() < self._paused_until:
            return
        self._waiting.extend(deliveries)
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="webhook-outbox-dispatcher")
        assert self._wake is not None
        self._wake.set()

    async def _dispatch_forever(self) -> None:
        """Rounds of dispatches, at most one per `DISPATCH_LINGER_S`: idle, it waits for a delivery, then lingers
        for the ones that follow it; busy, it takes what came since the last round began, once that lingered long
        enough. So under load a round, one workflow per subscriber, holds many transfers' states. A round's
        dispatched deliveries are marked in the background: the next round does not wait for our database."""
        assert self._wake is not None
        marking: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        began = loop.time()  # of the round: the first lingers from the dispatcher's start, the first delivery's
        try:
            while True:
                if not self._waiting:
                    self._wake.clear()
                    await self._wake.wait()
                    began = loop.time()
                await asyncio.sleep(max(0.0, began + DISPATCH_LINGER_S - loop.time()))
                began = loop.time()
                unclaimed = await self._claim_unclaimed()
                waiting, self._waiting = self._waiting, []
                dispatched = await self._signal(waiting + unclaimed)
                if dispatched:
                    task = asyncio.create_task(self._mark(dispatched))
                    marking.add(task)
                    task.add_done_callback(marking.discard)
        finally:
            for task in marking:
                task.cancel()

    async def _claim_unclaimed(self) -> list[PendingDelivery]:
        """The deliveries that no dispatcher has (written by the client API), claimed for this round."""
        if time.monotonic() < self._paused_until:
            return []
        deliveries = webhook_deliveries.c
        try:
            found = await self._undispatched(deliveries.workflow_id.is_(None) & (deliveries.cycle == 1), SWEEP_BATCH)
            claimed = await claim(self._db, [(each.subscription_id, each.item) for each in found])
        except Exception as error:  # the database: the next round, or the sweeper, claims them
            self._pause(f"{type(error).__name__} claiming deliveries")
            return []
        return [each for each in found if each.item.delivery_id in claimed]

    async def _mark(self, dispatched: list[DeliveryBatch]) -> None:
        try:
            await mark_dispatched(self._db, dispatched)
        except Exception as error:  # the sweeper dispatches them again, harmlessly
            self._pause(f"{type(error).__name__} marking deliveries dispatched")

    async def _sweep_forever(self) -> None:
        """A sweep at once (a restarted worker dispatches right away what a crash left), then one per interval."""
        while True:
            try:
                dispatched = await self.sweep(self._sweep_interval)
            except Exception as error:  # the database down: the next sweep catches up
                log.warning("webhook sweeper: %s; next sweep in %.0f s", type(error).__name__,
                            self._sweep_interval.total_seconds())  # fmt: skip
            else:
                if dispatched:
                    log.info("webhook sweeper dispatched %d deliveries left undispatched", dispatched)
            await asyncio.sleep(self._sweep_interval.total_seconds())

    async def _undispatched(self, condition: Any, limit: int | None = None) -> list[PendingDelivery]:
        deliveries, events = webhook_deliveries.c, webhook_events.c
        query = (
            select(
                deliveries.delivery_id,
                deliveries.event_id,
                deliveries.subscription_id,
                deliveries.transfer_id,
                deliveries.cycle,
                events.sequence,
                events.data,
            )  # fmt: skip
            .join_from(webhook_deliveries, webhook_events, events.event_id == deliveries.event_id)
            .where(deliveries.dispatched_at.is_(None) & (deliveries.status == DeliveryStatus.PENDING.value) & condition)
            .order_by(deliveries.created_at, deliveries.delivery_id)
            .limit(limit)
        )
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            PendingDelivery(
                row.transfer_id,
                row.subscription_id,
                delivery_item(
                    row.delivery_id,
                    row.event_id,
                    row.transfer_id,
                    row.sequence,
                    TransferState(row.data["currentState"]),
                    cycle=row.cycle,
                ),
            )  # fmt: skip
            for row in rows
        ]

    async def _dispatch(self, pending: Sequence[PendingDelivery]) -> int:
        """Signal each batch's workflow its deliveries, all at once; mark those dispatched; how many."""
        dispatched = await self._signal(pending)
        if dispatched:
            await mark_dispatched(self._db, dispatched)
        return sum(len(batch.deliveries) for batch in dispatched)

    async def _signal(self, pending: Sequence[PendingDelivery]) -> list[DeliveryBatch]:
        """Signal-with-start each batch's workflow its deliveries, all at once; the batches that got there. A
        failure pauses the saves' dispatches (the sweeper's turn)."""
        if not pending or self._client is None:
            return []
        grouped = batches((each.subscription_id, each.item) for each in pending)
        tasks = [asyncio.create_task(self._dispatch_one(batch)) for batch in grouped]
        done, unfinished = await asyncio.wait(tasks, timeout=START_TIMEOUT_S)
        for task in unfinished:
            task.cancel()
        dispatched = [batch for batch, task in zip(grouped, tasks, strict=True) if _succeeded(task, done)]
        if sum(len(batch.deliveries) for batch in dispatched) < len(pending):
            failures = {type(task.exception()).__name__ for task in done if task.exception() is not None}
            missed = len(pending) - sum(len(batch.deliveries) for batch in dispatched)
            self._pause(f"{missed} of {len(pending)} dispatches failed "
                        f"({', '.join(sorted(failures))}{', timed out' if unfinished else ''})")  # fmt: skip
        return dispatched

    async def _dispatch_one(self, batch: DeliveryBatch) -> None:
        assert self._client is not None
        await dispatch_batch(self._client, batch, task_queue=self._task_queue, timeout_s=START_TIMEOUT_S)

    def _pause(self, reason: str) -> None:
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
        log.warning("webhook deliveries not dispatched: %s; the sweeper will dispatch them", reason)


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
