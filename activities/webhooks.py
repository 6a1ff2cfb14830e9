"""Attempts at delivering webhooks, run by `WebhookDeliveryWorkflow` as a local activity with one try.

`attempt_deliveries` makes one attempt for each delivery of a batch (those to one subscriber that are due together):
it reads the deliveries with their events and the subscription with its secrets (by id, once per batch: no secret
ever enters a workflow history), POSTs each event with the Money Movement headers, the Standard Webhooks signature
and the subscriber's auth scheme through the SSRF-guarded client (redirects never followed), each transfer's events
in order and different transfers' side by side, and records the attempts in one transaction. Success is exactly
HTTP 200; anything else is a failed attempt, never an exception, so the workflow's schedule decides what comes
next. It is idempotent per (delivery, cycle, attempt): a re-run after a crash posts again (the receiver dedupes on
the event id) and rewrites the same records; a delivery already DELIVERED in this cycle is not posted again.

A subscription has at most `subscription_concurrency` requests in flight in this process. A batch waits for one
turn up to `slot_wait_s`, else answers BUSY without a request or a record, and the workflow tries again after a
pause; with its turn it takes such others as are free at once, one per transfer at most, and posts that many
transfers' events side by side. A receiver that hangs holds a few turns, never all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel
from temporalio import activity

from activities.webhook_requests import OAuthTokens, TokenUnavailable, auth_headers, delivery_headers, secret_values
from mojaflow.database import Database
from mojaflow.metrics import count_webhook_attempt
from mojaflow.url_guard import UnsafeUrl
from mojaflow.webhook_deliveries import AttemptRecord, PendingDelivery, load_deliveries, mark_delivery, record_attempts
from mojaflow.webhook_models import DeliveryStatus
from mojaflow.webhook_subscription_models import OAuth2ClientCredentialsAuth
from mojaflow.webhook_subscriptions import SubscriptionSecrets, load_subscription_for_delivery

__all__ = ["AttemptBatch", "AttemptOutcome", "AttemptRequest", "AttemptResult", "FinishRequest", "WebhookActivities"]

log = logging.getLogger("mojaflow.webhooks")

EXCERPT_BYTES = 1024  # of a response body kept with the attempt: no more
SubscriptionLoader = Callable[[Database, str], Awaitable[SubscriptionSecrets | None]]


class AttemptOutcome(StrEnum):
    DELIVERED = "DELIVERED"  # the receiver answered exactly 200
    FAILED = "FAILED"  # anything else: another status, a timeout, a refused connection, a refused address
    BUSY = "BUSY"  # no turn among the subscription's attempts in flight: nothing sent, nothing recorded
    CANCELLED = "CANCELLED"  # nothing to deliver: the subscription is disabled or deleted, the delivery cancelled


class AttemptRequest(BaseModel):
    """Ids and times only. `at` is the attempt's time from the workflow; `last`: the cycle's last scheduled
    attempt (a failure makes the delivery FAILED); `next_attempt_at`: when the next one is due, if any."""

    delivery_id: str
    cycle: int
    attempt: int
    manual: bool = False
    at: datetime
    last: bool = False
    next_attempt_at: datetime | None = None


class AttemptBatch(BaseModel):
    """Attempts of one subscriber's deliveries, made in this order."""

    subscription_id: str
    attempts: list[AttemptRequest]


class AttemptResult(BaseModel):
    """What the workflow's history keeps of an attempt: never a header, a body or a secret."""

    outcome: AttemptOutcome
    status_code: int | None = None
    error_class: str | None = None
    latency_ms: int | None = None


class FinishRequest(BaseModel):
    delivery_id: str
    cycle: int
    status: DeliveryStatus


class WebhookActivities:
    """Bound to the guarded HTTP client (`mojaflow.url_guard.guarded_client`) and the app database."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        database: Database,
        *,
        subscription_concurrency: int = 10,
        slot_wait_s: float = 10.0,
        load_subscription: SubscriptionLoader = load_subscription_for_delivery,
    ) -> None:
        self._http = http
        self._db = database
        self._limit = subscription_concurrency
        self._slot_wait_s = slot_wait_s
        self._turns: dict[str, _Turns] = {}
        self._load_subscription = load_subscription
        self._tokens = OAuthTokens(http, database)

    @activity.defn
    async def attempt_deliveries(self, batch: AttemptBatch) -> list[AttemptResult]:
        """POST each event once (twice with OAuth2 when the first token meets a 401); record the attempts. One
        result per request, in order; all BUSY if the subscription has no turn."""
        subscription_id = batch.subscription_id
        turns = self._turns.get(subscription_id) or self._turns.setdefault(subscription_id, _Turns(self._limit))
        turns.users += 1
        try:
            try:
                await asyncio.wait_for(turns.semaphore.acquire(), self._slot_wait_s)
            except TimeoutError:
                for _ in batch.attempts:  # nothing sent: the subscription had no turn
                    count_webhook_attempt(AttemptOutcome.BUSY, None, "no_turn", None)
                return [AttemptResult(outcome=AttemptOutcome.BUSY)] * len(batch.attempts)
            try:
                return await self._attempt(batch, turns)
            finally:
                turns.semaphore.release()
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[subscription_id]

    @activity.defn
    async def finish_delivery(self, request: FinishRequest) -> None:
        """Record a status the attempts did not (CANCELLED; FAILED after an attempt that could not record)."""
        await mark_delivery(self._db, request.delivery_id, request.cycle, request.status)

    async def _attempt(self, batch: AttemptBatch, turns: _Turns) -> list[AttemptResult]:
        deliveries = await load_deliveries(self._db, [request.delivery_id for request in batch.attempts])
        results: list[AttemptResult | None] = [None] * len(batch.attempts)
        to_post: list[tuple[int, AttemptRequest, PendingDelivery]] = []
        for index, request in enumerate(batch.attempts):
            delivery = deliveries.get(request.delivery_id)
            if delivery is None:
                results[index] = AttemptResult(outcome=AttemptOutcome.CANCELLED, error_class="delivery_not_found")
                continue
            if delivery.cycle == request.cycle and delivery.status is not DeliveryStatus.DELIVERING:
                settled = _settled(delivery.status)  # this attempt ran before the crash, or the delivery was cancelled
                if settled is not None:
                    results[index] = AttemptResult(outcome=settled)
                    continue
            to_post.append((index, request, delivery))
        if to_post:
            subscription = await self._load_subscription(self._db, batch.subscription_id)
            if subscription is None or not subscription.active:
                for index, request, _ in to_post:
                    await mark_delivery(self._db, request.delivery_id, request.cycle, DeliveryStatus.CANCELLED)
                    results[index] = _INACTIVE
            else:
                records: list[AttemptRecord] = []

                async def post_in_order(chain: list[tuple[int, AttemptRequest, PendingDelivery]]) -> None:
                    for index, request, delivery in chain:
                        result, excerpt = await self._post(delivery, subscription, request.at)
                        count_webhook_attempt(result.outcome, result.status_code, result.error_class, delivery.body)
                        records.append(_record(request, result, excerpt))
                        results[index] = result
                        if result.outcome is AttemptOutcome.FAILED:
                            log.info("webhook %s attempt %d failed: %s", request.delivery_id, request.attempt,
                                     result.error_class or f"HTTP {result.status_code}")  # fmt: skip

                chains: dict[str, list[tuple[int, AttemptRequest, PendingDelivery]]] = {}
                for each in to_post:
                    chains.setdefault(each[2].transfer_id, []).append(each)
                queue = iter(chains.values())  # shared: each chain is taken by one poster

                async def poster() -> None:
                    for chain in queue:
                        await post_in_order(chain)

                extra = await turns.take_free(len(chains) - 1)
                try:
                    async with asyncio.TaskGroup() as posters:
                        for _ in range(1 + extra):
                            posters.create_task(poster())
                finally:
                    turns.give_back(extra)
                await record_attempts(self._db, records, workflow_id=activity.info().workflow_id)
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    async def _post(
        self, delivery: PendingDelivery, subscription: SubscriptionSecrets, at: datetime
    ) -> tuple[AttemptResult, str | None]:
        auth = subscription.auth
        started = time.monotonic()
        token: str | None = None
        try:
            if isinstance(auth, OAuth2ClientCredentialsAuth):
                token = await self._tokens.token(subscription.subscription_id, auth)
            status, excerpt = await self._send(delivery, subscription, at, token)
            if status == 401 and token is not None and isinstance(auth, OAuth2ClientCredentialsAuth):
                await self._tokens.refused(subscription.subscription_id, auth, token)  # fetched again, once
                token = await self._tokens.token(subscription.subscription_id, auth)
                status, excerpt = await self._send(delivery, subscription, at, token)
        except TokenUnavailable as error:
            return _failed(started, error.error_class), None
        except httpx.TimeoutException:
            return _failed(started, "timeout"), None
        except httpx.ConnectError as error:
            return _failed(started, _connect_error_class(error)), None
        except httpx.HTTPError:  # the connection broke, the answer is not HTTP, ...
            return _failed(started, "protocol_error"), None
        except UnsafeUrl as error:  # the address actually connected is not allowed (SSRF guard)
            return _failed(started, f"unsafe_url_{error.reason}"), None
        outcome = AttemptOutcome.DELIVERED if status == 200 else AttemptOutcome.FAILED
        result = AttemptResult(outcome=outcome, status_code=status, latency_ms=_since(started))
        return result, _scrub(excerpt, secret_values(auth, token))

    async def _send(
        self, delivery: PendingDelivery, subscription: SubscriptionSecrets, at: datetime, token: str | None
    ) -> tuple[int, bytes]:
        headers = delivery_headers(
            delivery, signing_secrets=subscription.signing_secrets, at=at, sent_at=datetime.now(UTC)
        )
        headers.update(auth_headers(subscription.auth, token))
        async with self._http.stream("POST", subscription.url, content=delivery.body, headers=headers) as response:
            excerpt = b""
            async for chunk in response.aiter_bytes():  # no more than 1 KB is ever read or kept
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
            return response.status_code, excerpt[:EXCERPT_BYTES]


_INACTIVE = AttemptResult(outcome=AttemptOutcome.CANCELLED, error_class="subscription_inactive")


class _Turns:
    """A subscription's requests in flight in this process (`semaphore`), and how many batches hold or await a
    turn."""

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0

    async def take_free(self, wanted: int) -> int:
        """Up to `wanted` more turns, of those free now: how many. Never waits (a free turn is acquired at once)."""
        taken = 0
        while taken < wanted and not self.semaphore.locked():
            await self.semaphore.acquire()
            taken += 1
        return taken

    def give_back(self, count: int) -> None:
        for _ in range(count):
            self.semaphore.release()


def _settled(status: DeliveryStatus) -> AttemptOutcome | None:
    return {
        DeliveryStatus.DELIVERED: AttemptOutcome.DELIVERED,
        DeliveryStatus.FAILED: AttemptOutcome.FAILED,
        DeliveryStatus.CANCELLED: AttemptOutcome.CANCELLED,
    }.get(status)


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failed(started: float, error_class: str) -> AttemptResult:
    return AttemptResult(outcome=AttemptOutcome.FAILED, error_class=error_class, latency_ms=_since(started))


def _connect_error_class(error: httpx.ConnectError) -> str:
    """Refused, TLS or other: from the message and causes (httpx keeps the OS's and ssl's errors as causes)."""
    cause: BaseException | None = error
    while cause is not None:
        name = type(cause).__name__
        if "SSL" in name or "Certificate" in name:
            return "tls_error"
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection_refused"
        cause = cause.__cause__ or cause.__context__
    return "connect_error"


def _scrub(excerpt: bytes, secrets: list[str]) -> str | None:
    """The response's first 1 KB as text, with any secret of ours a receiver echoed masked."""
    if not excerpt:
        return None
    text = excerpt.decode("utf-8", errors="replace")
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:EXCERPT_BYTES]


def _record(request: AttemptRequest, result: AttemptResult, excerpt: str | None) -> AttemptRecord:
    if result.outcome is AttemptOutcome.DELIVERED:
        status = DeliveryStatus.DELIVERED
    else:
        status = DeliveryStatus.FAILED if request.last else DeliveryStatus.DELIVERING
    return AttemptRecord(
        delivery_id=request.delivery_id,
        cycle=request.cycle,
        attempt=request.attempt,
        manual=request.manual,
        at=request.at,
        status=status,
        next_attempt_at=None if status is not DeliveryStatus.DELIVERING else request.next_attempt_at,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error_class=result.error_class,
        response_excerpt=excerpt,
    )
