"""`WebhookDeliveryWorkflow`: a batch of events delivered to one subscriber, durably, each transfer's in order.

One workflow per batch: the deliveries to one subscriber that a dispatcher had at once, of any transfers
(`mojaflow.webhook_dispatch`). Under load a batch holds many transfers' state changes, so a delivery costs a share
of one workflow rather than a workflow (DESIGN "Webhooks", the delivery's cost); alone, a transfer's states saved
within the dispatcher's linger still travel together. Each delivery (event x subscription, in one cycle) keeps its
own schedule: attempt k is due k-1 hours after its first (0 h, 1 h, ... 72 h), anchored to the first so a slow
attempt never shifts the others; each is one try of a local activity, a durable timer waits in between. Exactly
200 makes it DELIVERED; 73 failed attempts make it FAILED (the workflow still completes normally: a person replays
it, a new cycle). `retry_now` (an update) makes an attempt at once, recorded as manual, without shortening the 73;
cancelling the workflow (a subscription deleted or disabled) makes every open delivery CANCELLED.

The workflow closes once nothing is open. A dispatcher may hand over a delivery twice (the outbox's save and its
sweeper, as a signal to a running batch or in a batch of its own): one the workflow knows, in that cycle, is
ignored, and one already DELIVERED is not posted again (the activity reads its row first).

Runs started by versions before batches hold one transfer's deliveries (their input's `transfer_id`): such a run
waits for that transfer's later events, as it did, until the final state is dealt with or an hour passes quietly.

A worker that dies mid-attempt leaves no marker in the history: the next worker runs the same attempt again (same
event id, same record), so nothing is lost and nothing is counted twice. Times come from `workflow.now()` and go
to the activity, so every recorded time is exact, under the time-skipping test server too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import (
        AttemptBatch,
        AttemptOutcome,
        AttemptRequest,
        AttemptResult,
        FinishRequest,
        WebhookActivities,
    )
    from mojaflow.temporal import WEBHOOK_EVENT_IDS, WEBHOOK_STATUS, WEBHOOK_TRANSFER_IDS
    from mojaflow.webhook_deliveries import MANUAL_ATTEMPT_BASE
    from mojaflow.webhook_models import (
        ATTEMPTS_PER_CYCLE,
        NOT_IN_THIS_RUN,
        DeliveryBatch,
        DeliveryItem,
        DeliveryStatus,
        indexed_ids,
    )
    from workflows.transfer_state import LOCAL_ACTIVITY_FAILURES

__all__ = [
    "ATTEMPT_INTERVAL",
    "DeliveryOutcome",
    "DeliveryRun",
    "DeliverySummary",
    "ManualAttempt",
    "WebhookDeliveryWorkflow",
]

ATTEMPT_INTERVAL = timedelta(hours=1)  # the contract: re-posted every hour
# Runs of one transfer's deliveries (versions before batches) only:
IDLE_BEFORE_CLOSE = timedelta(hours=1)  # nothing open, no final state seen: wait this long for the next event
QUIET_BEFORE_INDEXING = timedelta(seconds=10)  # waiting for the next event longer than this: search attributes first
CLOSE_AFTER_EVENTS = 10_000  # of history: once nothing is open, close rather than grow (a new run takes over)
# One try: a failed POST waits for its hourly mark, never retried by Temporal. The timeout covers, per delivery of
# a batch, a token request and two POSTs (the refetch after a 401) at MOJAFLOW_WEBHOOK_TIMEOUT_S (<= 60 s) each.
ONE_TRY = RetryPolicy(maximum_attempts=1)
ATTEMPT_TIMEOUT = timedelta(minutes=4)
# Recording a status: idempotent, retried.
WEBHOOK_RECORD = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
# A subscription at its limit of requests in flight: try the same attempt again after a short, growing pause.
BUSY_FIRST_PAUSE = timedelta(milliseconds=500)
BUSY_MAX_PAUSE = timedelta(minutes=1)


class DeliveryRun(DeliveryBatch):
    """`DeliveryBatch` as the workflow reads it (every dispatcher sends a `DeliveryBatch`). The intervals are for
    tests on a server that cannot skip time: nothing else sets them, so deliveries re-post every hour."""

    attempt_interval_s: float = Field(default=ATTEMPT_INTERVAL.total_seconds(), gt=0)
    idle_before_close_s: float = Field(default=IDLE_BEFORE_CLOSE.total_seconds(), gt=0)


class DeliverySummary(BaseModel):
    delivery_id: str
    event_id: str
    cycle: int
    status: DeliveryStatus
    attempts: int  # scheduled attempts made in this cycle (at most 73)
    manual_attempts: int
    status_code: int | None = None  # of the last attempt
    error_class: str | None = None


class DeliveryOutcome(BaseModel):
    transfer_id: str | None = None  # of a run of one transfer's deliveries (versions before batches)
    subscription_id: str
    status: DeliveryStatus  # DELIVERED if all were; else FAILED if any did; else CANCELLED
    deliveries: list[DeliverySummary]

    def of(self, delivery_id: str) -> DeliverySummary:
        return next(each for each in self.deliveries if each.delivery_id == delivery_id)


class ManualAttempt(BaseModel):
    """`retry_now`'s answer: the manual attempt's result and the delivery's status after it."""

    attempt: int
    status: DeliveryStatus
    result: AttemptResult | None = None  # None if the delivery ended before its turn came


@dataclass
class _Planned:
    """An attempt about to be made of a delivery: its number and what it means for the schedule."""

    delivery: _Delivery
    number: int
    manual: bool
    last: bool
    next_at: datetime


@dataclass
class _Delivery:
    """One delivery in this workflow: its item and where its cycle stands."""

    item: DeliveryItem
    status: DeliveryStatus = DeliveryStatus.DELIVERING
    first_at: datetime | None = None  # of its first scheduled attempt: the anchor of the hourly marks
    attempts: int = 0
    manual_wanted: int = 0  # manual attempts asked for and not yet made
    manual_attempts: int = 0
    manual_results: dict[int, AttemptResult] = field(default_factory=dict)
    last: AttemptResult | None = None

    @property
    def open(self) -> bool:
        return self.status is DeliveryStatus.DELIVERING

    def due(self, interval: timedelta, now: datetime) -> datetime:
        return now if self.first_at is None else self.first_at + self.attempts * interval

    def summary(self) -> DeliverySummary:
        return DeliverySummary(
            delivery_id=self.item.delivery_id,
            event_id=self.item.event_id,
            cycle=self.item.cycle,
            status=self.status,
            attempts=self.attempts,
            manual_attempts=self.manual_attempts,
            status_code=self.last.status_code if self.last else None,
            error_class=self.last.error_class if self.last else None,
        )


def _transfer_order(delivery: _Delivery) -> tuple[str, int]:
    return delivery.item.transfer_id or "", delivery.item.sequence


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, run: DeliveryRun) -> None:
        self._run = run
        self._interval = timedelta(seconds=run.attempt_interval_s)
        self._deliveries: dict[str, _Delivery] = {}
        self._news = False  # a delivery came since the workflow last looked
        self._final_seen = False
        self._cancelled = False
        self._alarm: asyncio.Future[None] | None = None  # _news_within's timer
        self._alarm_at = workflow.now()
        self._accept(run.deliveries)
        # What the dispatcher's start set: upserted again only when it changes, at moments a search may need it.
        self._indexed = self._index_values(DeliveryStatus.DELIVERING)

    @workflow.run
    async def run(self, run: DeliveryRun) -> DeliveryOutcome:
        idle = timedelta(seconds=run.idle_before_close_s)
        try:
            while True:
                await self._attempt_due()
                if any(each.open for each in self._deliveries.values()):
                    await self._wait_for_due()
                    continue
                expecting = (
                    self._run.transfer_id is not None  # a batch expects nothing more
                    and not self._final_seen
                    and workflow.info().get_current_history_length() < CLOSE_AFTER_EVENTS
                )
                if expecting and await self._news_within(idle):
                    continue
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._news:  # a signal that came meanwhile is delivered before the run closes
                    break
        except asyncio.CancelledError:  # our API (subscription deleted or disabled) or the Web UI
            self._cancelled = True
            await self._cancel_open()
            await workflow.wait_condition(workflow.all_handlers_finished)
        self._index()
        return DeliveryOutcome(
            transfer_id=run.transfer_id,
            subscription_id=run.subscription_id,
            status=self._status(),
            deliveries=[each.summary() for each in self._deliveries.values()],
        )

    async def _news_within(self, idle: timedelta) -> bool:
        """Wait for the transfer's next event; the search attributes are brought up to date only if it is slow to
        come (a transfer's events usually follow each other within a second: one visibility write, not one each).

        The waits share one timer, the alarm, left running when news comes first: a timer per wait would be started
        and cancelled at every event: two history events and a timer task each."""
        quiet_since = workflow.now()
        for wait in (min(QUIET_BEFORE_INDEXING, idle), idle):
            until = quiet_since + wait
            while not self._news and workflow.now() < until:
                alarm = self._set_alarm(until)
                await workflow.wait_condition(lambda: self._news or alarm.done())  # noqa: B023 - awaited here
            if self._news:
                return True
            self._index()
        return False

    def _set_alarm(self, at: datetime) -> asyncio.Future[None]:
        """A timer that wakes the workflow at `at` or earlier: the one running if it rings no later, else a new
        one (the old rings for nothing, and costs less than its cancellation)."""
        if self._alarm is None or self._alarm.done() or self._alarm_at > at:
            self._alarm_at = at
            self._alarm = asyncio.ensure_future(workflow.sleep(at - workflow.now()))
        return self._alarm

    @workflow.signal
    def deliver(self, batch: DeliveryBatch) -> None:
        """More deliveries of this transfer to this subscriber (or a new cycle of one): a known one is ignored."""
        if self._cancelled:
            return
        self._accept(batch.deliveries)

    def _accept(self, items: list[DeliveryItem]) -> None:
        for item in items:
            known = self._deliveries.get(item.delivery_id)
            if known is not None and known.item.cycle >= item.cycle:
                continue
            self._deliveries[item.delivery_id] = _Delivery(item)
            self._final_seen = self._final_seen or item.final
            self._news = True

    async def _attempt_due(self) -> None:
        """Every delivery due now (or asked for by `retry_now`), in the transfer's order and in one local activity,
        until none is."""
        while True:
            self._news = False
            now = workflow.now()
            due = [
                each
                for each in sorted(self._deliveries.values(), key=_transfer_order)
                if each.open and (each.manual_wanted or each.due(self._interval, now) <= now)
            ]
            if not due:
                return
            await self._attempt([self._plan(delivery, now) for delivery in due])

    async def _wait_for_due(self) -> None:
        """Until the next scheduled attempt, a manual one or a new delivery; the search attributes say so first."""
        now = workflow.now()
        opened = [each for each in self._deliveries.values() if each.open]
        left = min(each.due(self._interval, now) for each in opened) - now
        if left <= timedelta(0):
            return
        self._index()
        try:
            await workflow.wait_condition(
                lambda: self._news or any(each.manual_wanted for each in opened), timeout=left
            )
        except TimeoutError:
            pass

    def _plan(self, delivery: _Delivery, now: datetime) -> _Planned:
        """The attempt to make of a due delivery: a manual one if asked for before its next scheduled one."""
        if delivery.manual_wanted and delivery.due(self._interval, now) > now:
            number = MANUAL_ATTEMPT_BASE + delivery.manual_attempts + 1
            return _Planned(delivery, number, manual=True, last=False, next_at=delivery.due(self._interval, now))
        first = delivery.first_at or now
        number = delivery.attempts + 1
        last = number == ATTEMPTS_PER_CYCLE
        return _Planned(delivery, number, manual=False, last=last, next_at=first + number * self._interval)

    async def _attempt(self, planned: list[_Planned]) -> None:
        """Make the planned attempts (one local activity, one try) and settle each delivery with its result."""
        batch = AttemptBatch(
            subscription_id=self._run.subscription_id,
            attempts=[
                AttemptRequest(
                    delivery_id=each.delivery.item.delivery_id,
                    cycle=each.delivery.item.cycle,
                    attempt=each.number,
                    manual=each.manual,
                    at=workflow.now(),
                    last=each.last,
                    next_attempt_at=None if each.last else each.next_at,
                )
                for each in planned
            ],
        )
        pause = BUSY_FIRST_PAUSE
        while True:
            try:
                results = await workflow.execute_local_activity_method(
                    WebhookActivities.attempt_deliveries,
                    batch,
                    start_to_close_timeout=ATTEMPT_TIMEOUT * len(planned),
                    retry_policy=ONE_TRY,
                )
            except LOCAL_ACTIVITY_FAILURES as error:
                if is_cancelled_exception(error):  # the workflow is being cancelled mid-attempt
                    raise asyncio.CancelledError() from error
                # e.g. our database unreachable: the attempts could not record themselves either
                workflow.logger.warning("webhook attempts could not run: %s", error.cause or error)
                results = [AttemptResult(outcome=AttemptOutcome.FAILED, error_class="attempt_error")] * len(planned)
                for each in planned:
                    if each.last:
                        await self._finish(each.delivery, DeliveryStatus.FAILED)
            if any(result.outcome is not AttemptOutcome.BUSY for result in results):
                break
            await workflow.sleep(pause * (0.5 + workflow.random().random()))
            pause = min(pause * 2, BUSY_MAX_PAUSE)
            now = workflow.now()
            batch = batch.model_copy(update={"attempts": [a.model_copy(update={"at": now}) for a in batch.attempts]})
        for each, result in zip(planned, results, strict=True):
            delivery = each.delivery
            if each.manual:
                delivery.manual_wanted -= 1
                delivery.manual_attempts += 1
                delivery.manual_results[each.number] = result
            else:
                delivery.first_at = delivery.first_at or batch.attempts[0].at
                if result.outcome is not AttemptOutcome.CANCELLED:  # CANCELLED: nothing was posted
                    delivery.attempts = each.number
            self._settle(delivery, result, last=each.last)

    @staticmethod
    def _settle(delivery: _Delivery, result: AttemptResult, *, last: bool) -> None:
        delivery.last = result
        if result.outcome is AttemptOutcome.DELIVERED:
            delivery.status = DeliveryStatus.DELIVERED
        elif result.outcome is AttemptOutcome.CANCELLED:
            delivery.status = DeliveryStatus.CANCELLED
        elif last:
            delivery.status = DeliveryStatus.FAILED

    async def _cancel_open(self) -> None:
        for delivery in self._deliveries.values():
            if delivery.open:
                delivery.status = DeliveryStatus.CANCELLED
                delivery.manual_wanted = 0
                await self._finish(delivery, DeliveryStatus.CANCELLED)

    async def _finish(self, delivery: _Delivery, status: DeliveryStatus) -> None:
        request = FinishRequest(delivery_id=delivery.item.delivery_id, cycle=delivery.item.cycle, status=status)
        await workflow.execute_local_activity_method(WebhookActivities.finish_delivery, request, **WEBHOOK_RECORD)

    def _status(self) -> DeliveryStatus:
        statuses = {each.status for each in self._deliveries.values()}
        for status in (DeliveryStatus.DELIVERING, DeliveryStatus.FAILED, DeliveryStatus.DELIVERED):
            if status in statuses:
                return status
        return DeliveryStatus.CANCELLED

    def _index(self) -> None:
        """Upsert the status and the ids if they changed: a visibility write each, so only before a wait and at the
        end, never per attempt."""
        indexed = self._index_values(self._status())
        if indexed == self._indexed:
            return
        self._indexed = indexed
        status, event_ids, transfer_ids = indexed
        updates: list[SearchAttributeUpdate[Any]] = [
            WEBHOOK_STATUS.value_set(status.value),
            WEBHOOK_EVENT_IDS.value_set(list(event_ids)),
        ]
        if self._run.transfer_id is None:  # a batch's (a run of one transfer has `TransferId`, set at its start)
            updates.append(WEBHOOK_TRANSFER_IDS.value_set(list(transfer_ids)))
        workflow.upsert_search_attributes(updates)

    def _index_values(self, status: DeliveryStatus) -> tuple[DeliveryStatus, tuple[str, ...], tuple[str, ...]]:
        items = [each.item for each in self._deliveries.values()]
        transfers = (item.transfer_id for item in items if item.transfer_id is not None)
        return status, tuple(indexed_ids(item.event_id for item in items)), tuple(indexed_ids(transfers))

    @workflow.query
    def deliveries(self) -> list[DeliverySummary]:
        """Where each delivery of this workflow stands (the Web UI's Queries tab shows it)."""
        return [each.summary() for each in self._deliveries.values()]

    @workflow.update
    async def retry_now(self, delivery_id: str) -> ManualAttempt:
        """Attempt that delivery at once (after the one in flight, if any): a manual attempt, not one of the 73."""
        delivery = self._deliveries[delivery_id]
        number = MANUAL_ATTEMPT_BASE + delivery.manual_attempts + delivery.manual_wanted + 1
        delivery.manual_wanted += 1
        await workflow.wait_condition(lambda: number in delivery.manual_results or not delivery.open)
        return ManualAttempt(attempt=number, status=delivery.status, result=delivery.manual_results.get(number))

    @retry_now.validator
    def _only_while_delivering(self, delivery_id: str) -> None:
        delivery = self._deliveries.get(delivery_id)
        if delivery is None:  # the API then starts a new cycle: no run of ours is delivering it
            raise ApplicationError(f"delivery {delivery_id} is not in this run", type=NOT_IN_THIS_RUN)
        if not delivery.open or self._cancelled:
            raise ApplicationError(f"the delivery is {delivery.status.value}: nothing to retry in this cycle")
