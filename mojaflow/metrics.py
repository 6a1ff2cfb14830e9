"""Our Prometheus metrics (prometheus-client, its default registry), and the helpers that record them.

Every process records what it does: the API the `RECEIVED` saves and the backend's CBS lookups, the worker the
rest. The API serves them on `GET /metrics` (api/metrics.py, with the database gauges of
mojaflow/metrics_server.py), a worker on `MOJAFLOW_WORKER_METRICS_PORT` (with Temporal's own metrics).

Label values are bounded, and never personal: directions, states, our error codes, phases, operation names,
outcomes, HTTP statuses, the webhook error classes. No party id, name, account, transfer or subscription id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

import httpx
from prometheus_client import Counter, Histogram, disable_created_metrics

from mojaflow.codes import ErrorCode
from mojaflow.models import TransferRecord

__all__ = [
    "CBS_REQUEST_ERRORS",
    "CBS_REQUEST_SECONDS",
    "PHASE_SECONDS",
    "SDK_REQUEST_ERRORS",
    "SDK_REQUEST_SECONDS",
    "TRANSFER_STATE_CHANGES",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_DELIVERY_LAG_SECONDS",
    "Phase",
    "count_state_change",
    "count_webhook_attempt",
    "measure_cbs_request",
    "measure_phase",
    "measure_sdk_request",
]

disable_created_metrics()  # no `_created` series beside each counter and histogram: Prometheus does not need them

# From a local call (~5 ms) to the SDK's longest waits (a party lookup or a prepare: up to a minute)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A webhook is delivered within a second, or after hourly re-posts for up to 72 h
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 4 * 3600.0, 24 * 3600.0, 73 * 3600.0)

TRANSFER_STATE_CHANGES = Counter(
    "mojaflow_transfer_state_changes",
    "Transfer states saved, once per state of a transfer (counted on the committed save that wrote its event). "
    "error_code: the transfer's lastError.code in ABORTED / ERROR_OCCURRED, else empty.",
    ["direction", "state", "error_code"],
)
PHASE_SECONDS = Histogram(
    "mojaflow_phase_duration_seconds",
    "One attempt at a transfer's phase, as its activity ran it: party (lookup), quote, hold (payer's hold; inbound: "
    "the credit reservation), money_step (the acceptQuote PUT), settle (commit or release at the CBS).",
    ["phase", "direction", "outcome"],
    buckets=_CALL_BUCKETS,
)
SDK_REQUEST_SECONDS = Histogram(
    "mojaflow_sdk_request_duration_seconds",
    "Requests to the SDK's outbound API by operation; outcome: ok (2xx), error (any other status or no answer).",
    ["operation", "outcome"],
    buckets=_CALL_BUCKETS,
)
SDK_REQUEST_ERRORS = Counter(
    "mojaflow_sdk_request_errors",
    "Requests to the SDK's outbound API that did not answer 2xx: http_<status>, timeout, connect_error, network_error.",
    ["operation", "error"],
)
CBS_REQUEST_SECONDS = Histogram(
    "mojaflow_cbs_request_duration_seconds",
    "Requests to the core banking system by operation; outcome: ok, refused (a documented refusal), unavailable.",
    ["operation", "outcome"],
    buckets=_CALL_BUCKETS,
)
CBS_REQUEST_ERRORS = Counter(
    "mojaflow_cbs_request_errors",
    "Requests to the CBS that did not succeed: the refusal's code, http_<status> (undocumented answer), unreachable.",
    ["operation", "error"],
)
WEBHOOK_ATTEMPTS = Counter(
    "mojaflow_webhook_attempts",
    "Webhook delivery attempts by outcome: delivered, failed (reason: http_<status> or the error class), busy "
    "(reason no_turn: nothing sent, the subscription's attempts in flight were at their limit).",
    ["outcome", "reason"],
)
WEBHOOK_DELIVERY_LAG_SECONDS = Histogram(
    "mojaflow_webhook_delivery_lag_seconds",
    "From a state change (its event's occurredAt) to the receiver's 200.",
    buckets=_LAG_BUCKETS,
)

Phase = Literal["party", "quote", "hold", "money_step", "settle"]
_ERROR_CODES = frozenset(code.value for code in ErrorCode)


def count_state_change(record: TransferRecord) -> None:
    """A state saved for the first time (its event row was new in the committed transaction): a re-run of the save
    finds the event and is not counted again."""
    view = record.view
    code = view.last_error.code if view.last_error is not None and view.current_state.value in _ENDED else ""
    if code and code not in _ERROR_CODES:
        code = "other"  # our codes are an enum; anything else would be an unbounded label
    TRANSFER_STATE_CHANGES.labels(view.direction.value.lower(), view.current_state.value, code).inc()


_ENDED = frozenset({"ABORTED", "ERROR_OCCURRED"})


@contextmanager
def measure_phase(phase: Phase, direction: Literal["outbound", "inbound"]) -> Iterator[None]:
    """Time one attempt at a phase; outcome `error` when it raises (a refusal, an unavailable system)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        PHASE_SECONDS.labels(phase, direction, outcome).observe(time.perf_counter() - started)


class _SdkRequest:
    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.started = time.perf_counter()

    def answered(self, response: httpx.Response) -> None:
        ok = 200 <= response.status_code < 300
        self._observe("ok" if ok else "error", None if ok else f"http_{response.status_code}")

    def failed(self, error: BaseException) -> None:
        if isinstance(error, httpx.TimeoutException):
            kind = "timeout"
        elif isinstance(error, httpx.ConnectError):
            kind = "connect_error"
        else:
            kind = "network_error"
        self._observe("error", kind)

    def _observe(self, outcome: str, error: str | None) -> None:
        SDK_REQUEST_SECONDS.labels(self.operation, outcome).observe(time.perf_counter() - self.started)
        if error is not None:
            SDK_REQUEST_ERRORS.labels(self.operation, error).inc()


async def measure_sdk_request(operation: str, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """`await send()` (an httpx request to the SDK), timed and counted under `operation`; raises what it raises."""
    request = _SdkRequest(operation)
    try:
        response = await send()
    except httpx.HTTPError as error:
        request.failed(error)
        raise
    request.answered(response)
    return response


@contextmanager
def measure_cbs_request(operation: str) -> Iterator[_CbsRequest]:
    """Time one CBS request; the caller says how it ended (`refused(code)`, `unavailable(error)`), else ok."""
    request = _CbsRequest()
    started = time.perf_counter()
    try:
        yield request
    finally:
        CBS_REQUEST_SECONDS.labels(operation, request.outcome).observe(time.perf_counter() - started)
        if request.error is not None:
            CBS_REQUEST_ERRORS.labels(operation, request.error).inc()


class _CbsRequest:
    outcome = "ok"
    error: str | None = None

    def refused(self, code: str) -> None:  # a code the contract documents for the operation: bounded
        self.outcome, self.error = "refused", code

    def unavailable(self, error: str) -> None:
        self.outcome, self.error = "unavailable", error


def count_webhook_attempt(outcome: str, status_code: int | None, error_class: str | None, body: bytes | None) -> None:
    """One attempt's result; when delivered, its lag from the event's `occurredAt` (read from the posted body)."""
    reason = "" if outcome == "DELIVERED" else error_class or (f"http_{status_code}" if status_code else "")
    WEBHOOK_ATTEMPTS.labels(outcome.lower(), reason).inc()
    if outcome == "DELIVERED" and body is not None:
        occurred = _occurred_at(body)
        if occurred is not None:
            WEBHOOK_DELIVERY_LAG_SECONDS.observe(max(0.0, (datetime.now(UTC) - occurred).total_seconds()))


def _occurred_at(body: bytes) -> datetime | None:
    try:
        value = json.loads(body)["data"]["occurredAt"]
        occurred = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return occurred if occurred.tzinfo is not None else occurred.replace(tzinfo=UTC)
