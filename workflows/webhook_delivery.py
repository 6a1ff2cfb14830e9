"""`WebhookDeliveryWorkflow`: one event delivered to one subscriber, durably.

The story, in `run`: attempt k is due k-1 hours after the first (0 h, 1 h, ... 72 h), anchored to the first, so a
slow attempt never shifts the others; each is one try of a local activity (the cheapest durable shape: the first
attempt costs no more than the workflow task that starts the workflow), and a durable timer waits in between.
Exactly 200 ends it DELIVERED; 73 failed attempts end it FAILED (a normal completion: a person replays it by a
manual retry, a new cycle). `retry_now` (an update) makes an attempt at once, recorded as manual, without
shortening the 73; cancelling the workflow ends it CANCELLED.

A worker that dies mid-attempt leaves no marker in the history: the next worker runs the same attempt again (same
event id, same record), so nothing is lost and nothing is counted twice. Times come from `workflow.now()` and go
to the activity, so every recorded time is exact, under the time-skipping test server too.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import (
        AttemptOutcome,
        AttemptRequest,
        AttemptResult,
        FinishRequest,
        WebhookActivities,
    )
    from mojaflow.temporal import TRANSFER_ID, WEBHOOK_EVENT_ID, WEBHOOK_STATUS, WEBHOOK_SUBSCRIPTION_ID
    from mojaflow.webhook_deliveries import MANUAL_ATTEMPT_BASE
    from mojaflow.webhook_models import ATTEMPTS_PER_CYCLE, DeliveryInput, DeliveryStatus

__all__ = ["ATTEMPT_INTERVAL", "DeliveryOutcome", "DeliveryRun", "ManualAttempt", "WebhookDeliveryWorkflow"]

ATTEMPT_INTERVAL = timedelta(hours=1)  # the contract: re-posted every hour
# One try: a failed POST waits for its hourly mark, never retried by Temporal. The timeout covers a token request
# and two POSTs (the refetch after a 401) at MOJAFLOW_WEBHOOK_TIMEOUT_S (at most 60 s) each.
WEBHOOK_ATTEMPT = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(minutes=4),
    retry_policy=RetryPolicy(maximum_attempts=1),
)
# Recording a status: idempotent, retried.
WEBHOOK_RECORD = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
# A subscription at its limit of requests in flight: try the same attempt again after a short, growing pause.
BUSY_FIRST_PAUSE = timedelta(milliseconds=500)
BUSY_MAX_PAUSE = timedelta(minutes=1)


class DeliveryRun(DeliveryInput):
    """`DeliveryInput` as the workflow reads it (every starter sends a `DeliveryInput`). `attempt_interval_s` is
    for tests on a server that cannot skip time (a worker killed while deliveries wait on their timers): nothing
    else sets it, so deliveries re-post every hour."""

    attempt_interval_s: float = Field(default=ATTEMPT_INTERVAL.total_seconds(), gt=0)


class DeliveryOutcome(BaseModel):
    delivery_id: str
    cycle: int
    status: DeliveryStatus
    attempts: int  # scheduled attempts made in this cycle (at most 73)
    manual_attempts: int
    status_code: int | None = None  # of the last attempt
    error_class: str | None = None


class ManualAttempt(BaseModel):
    """`retry_now`'s answer: the manual attempt's result and the delivery's status after it."""

    attempt: int
    status: DeliveryStatus
    result: AttemptResult | None = None  # None if the delivery ended before its turn came


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, delivery: DeliveryRun) -> None:
        self._delivery = delivery
        self._interval = timedelta(seconds=delivery.attempt_interval_s)
        self._status = DeliveryStatus.DELIVERING
        self._attempts = 0
        self._manual_attempts = 0
        self._manual_wanted = False
        self._manual_results: dict[int, AttemptResult] = {}
        self._last: AttemptResult | None = None

    @workflow.run
    async def run(self, delivery: DeliveryRun) -> DeliveryOutcome:
        workflow.upsert_search_attributes(
            [
                TRANSFER_ID.value_set(delivery.transfer_id),
                WEBHOOK_EVENT_ID.value_set(delivery.event_id),
                WEBHOOK_SUBSCRIPTION_ID.value_set(delivery.subscription_id),
                WEBHOOK_STATUS.value_set(self._status.value),
            ]
        )
        try:
            await self._deliver()
        except asyncio.CancelledError:  # our API (subscription deleted or disabled) or the Web UI
            self._status = DeliveryStatus.CANCELLED
            await self._finish(DeliveryStatus.CANCELLED)
        workflow.upsert_search_attributes([WEBHOOK_STATUS.value_set(self._status.value)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DeliveryOutcome(
            delivery_id=delivery.delivery_id,
            cycle=delivery.cycle,
            status=self._status,
            attempts=self._attempts,
            manual_attempts=self._manual_attempts,
            status_code=self._last.status_code if self._last else None,
            error_class=self._last.error_class if self._last else None,
        )

    async def _deliver(self) -> None:
        first = workflow.now()
        for attempt in range(1, ATTEMPTS_PER_CYCLE + 1):
            await self._until(first + (attempt - 1) * self._interval)
            if self._status is not DeliveryStatus.DELIVERING:  # a manual attempt settled it
                return
            last = attempt == ATTEMPTS_PER_CYCLE
            result = await self._attempt(attempt, manual=False, last=last, next_at=first + attempt * self._interval)
            if result.outcome is not AttemptOutcome.CANCELLED:  # CANCELLED: nothing was posted
                self._attempts = attempt
            if self._settle(result, last=last):
                return

    async def _until(self, due: datetime) -> None:
        """Wait for the attempt due then, making any manual attempt asked for meanwhile."""
        while True:
            if self._manual_wanted:
                self._manual_wanted = False
                self._manual_attempts += 1
                number = MANUAL_ATTEMPT_BASE + self._manual_attempts
                result = await self._attempt(number, manual=True, last=False, next_at=due)
                self._manual_results[number] = result
                if self._settle(result, last=False):
                    return
            left = due - workflow.now()
            if left <= timedelta(0):
                return
            try:
                await workflow.wait_condition(lambda: self._manual_wanted, timeout=left)
            except TimeoutError:
                return

    async def _attempt(self, number: int, *, manual: bool, last: bool, next_at: datetime) -> AttemptResult:
        request = AttemptRequest(
            delivery_id=self._delivery.delivery_id,
            subscription_id=self._delivery.subscription_id,
            cycle=self._delivery.cycle,
            attempt=number,
            manual=manual,
            at=workflow.now(),
            last=last,
            next_attempt_at=None if last else next_at,
        )
        pause = BUSY_FIRST_PAUSE
        while True:
            try:
                result = await workflow.execute_local_activity_method(
                    WebhookActivities.attempt_delivery, request, **WEBHOOK_ATTEMPT
                )
            except ActivityError as error:
                if is_cancelled_exception(error):  # the workflow is being cancelled mid-attempt
                    raise asyncio.CancelledError() from error
                # e.g. our database unreachable: the attempt could not record itself either
                workflow.logger.warning("webhook attempt %d could not run: %s", number, error.cause or error)
                result = AttemptResult(outcome=AttemptOutcome.FAILED, error_class="attempt_error")
                if last:
                    await self._finish(DeliveryStatus.FAILED)
            if result.outcome is not AttemptOutcome.BUSY:
                return result
            await workflow.sleep(pause * (0.5 + workflow.random().random()))
            pause = min(pause * 2, BUSY_MAX_PAUSE)
            request = request.model_copy(update={"at": workflow.now()})

    def _settle(self, result: AttemptResult, *, last: bool) -> bool:
        """Keep the attempt's result; True when the delivery is over."""
        self._last = result
        if result.outcome is AttemptOutcome.DELIVERED:
            self._status = DeliveryStatus.DELIVERED
        elif result.outcome is AttemptOutcome.CANCELLED:
            self._status = DeliveryStatus.CANCELLED
        elif last:
            self._status = DeliveryStatus.FAILED
        return self._status is not DeliveryStatus.DELIVERING

    async def _finish(self, status: DeliveryStatus) -> None:
        request = FinishRequest(delivery_id=self._delivery.delivery_id, cycle=self._delivery.cycle, status=status)
        await workflow.execute_local_activity_method(WebhookActivities.finish_delivery, request, **WEBHOOK_RECORD)

    @workflow.update
    async def retry_now(self) -> ManualAttempt:
        """Attempt at once (after the one in flight, if any): a manual attempt, not one of the 73."""
        number = MANUAL_ATTEMPT_BASE + self._manual_attempts + 1
        self._manual_wanted = True
        await workflow.wait_condition(
            lambda: number in self._manual_results or self._status is not DeliveryStatus.DELIVERING
        )
        return ManualAttempt(attempt=number, status=self._status, result=self._manual_results.get(number))

    @retry_now.validator
    def _only_while_delivering(self) -> None:
        if self._status is not DeliveryStatus.DELIVERING:
            raise ValueError(f"the delivery is {self._status.value}: nothing to retry in this cycle")
