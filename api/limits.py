"""Abuse limits of our HTTP surfaces: a rate limit per credential on `POST`, and the size of request bodies and heads.

Each refuses a request before any route code runs, so a refused request never claims an idempotency key nor
starts a workflow:

* `RateLimiter` (client API, `MOJAFLOW_RATE_LIMIT_PER_MINUTE`): a token bucket per credential (its actor: API key
  id or token subject), in the memory of each API process, so N processes allow N times as much. It holds that
  many requests and refills at that rate: a burst of a minute's worth, then a steady pace. The `Authenticator`
  checks it once the caller is known (api.auth): 429 `rate_limited` with `Retry-After` (seconds).
* `RequestLimits` (ASGI middleware, both APIs): a body over `MOJAFLOW_MAX_BODY_BYTES` is 413, refused on its
  `Content-Length` before the app reads it, or, chunked, as soon as the bytes read pass the limit. What follows
  (up to four times the limit, for 5 s at most) is read and dropped before the 413 goes out, so that a client
  still sending sees the answer rather than a reset connection. A request line plus headers over
  `MOJAFLOW_MAX_HEADER_BYTES` is 431; the HTTP server stops buffering a head still incomplete at twice that size
  (`h11_max_incomplete_event_size`, api.__main__), refused there with uvicorn's plain 400 before any of our code
  runs. Either way the connection is closed afterwards.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Caller
from api.problems import Problem, problem_response, problem_responses

__all__ = ["RateLimiter", "RequestLimits", "client_limit_responses", "document_limits", "problem_render"]

Render = Callable[[int, str, dict[str, str]], Response]  # (status, detail, headers) → the surface's error answer


class RateLimiter:
    """Token buckets per credential: at most `per_minute` requests in a burst, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1 (no limiter at all for none)")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # credential → (tokens, when counted)

    def check(self, caller: Caller) -> None:
        """Count one request of `caller`; raise 429 `rate_limited` if its bucket is empty."""
        key = caller.actor if caller.actor != "anonymous" else f"anonymous:{caller.client_key}"  # MOJAFLOW_AUTH=none
        wait_s = self.take(key)
        if wait_s > 0:
            retry_after = str(max(1, math.ceil(wait_s)))
            raise Problem(
                429, "rate_limited", "Too many requests",
                f"more than {int(self._capacity)} POST requests a minute with this credential; "
                f"retry after {retry_after} s",
                headers={"Retry-After": retry_after},
            )  # fmt: skip

    def take(self, key: str) -> float:
        """Take one token from `key`'s bucket: 0.0 if there was one, else the seconds until there is one."""
        now = self._clock()
        tokens, counted = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - counted) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # only authenticated callers get here; a full bucket is no bucket at all
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        horizon = self._capacity / self._rate
        self._buckets = {key: value for key, value in self._buckets.items() if now - value[1] < horizon}


class _BodyTooLarge(Exception):
    pass


class RequestLimits:
    """ASGI middleware: 413 for a body over `max_body_bytes`, 431 for a head over `max_header_bytes`, answered by
    `render` in the surface's own error dialect, with `Connection: close`."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int, render: Render) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _head_size(scope) > self.max_header_bytes:
            detail = f"the request line and headers exceed {self.max_header_bytes} bytes"
            await self._refuse(431, detail, scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            if length <= _DRAIN_FACTOR * self.max_body_bytes:
                await _drain(receive, _DRAIN_FACTOR * self.max_body_bytes)
            await self._refuse(413, self._body_detail(), scope, receive, send)
            return

        read = 0
        overflowed = False
        started = False
        more_body = True

        async def limited_receive() -> Message:
            nonlocal read, overflowed, more_body
            if overflowed:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                more_body = bool(message.get("more_body", False))
                if read > self.max_body_bytes:  # chunked, or more than its Content-Length said: stop reading here
                    overflowed = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed:
                return  # what the app answers to the aborted read (a 400) gives way to our 413, sent below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not overflowed:
                raise
        if overflowed and not started:
            if more_body:
                await _drain(receive, (_DRAIN_FACTOR - 1) * self.max_body_bytes)
            await self._refuse(413, self._body_detail(), scope, receive, send)

    def _body_detail(self) -> str:
        return f"the request body exceeds {self.max_body_bytes} bytes"

    async def _refuse(self, status: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.render(status, detail, {"Connection": "close"})  # what is left of the body is never read
        await response(scope, receive, send)


# A body somewhat over the limit is read (and dropped) before the 413 is sent: a server that closes the connection
# while the client still sends has the client see a reset, not our answer. Bounded in size and time.
_DRAIN_FACTOR = 4
_DRAIN_S = 5.0


async def _drain(receive: Receive, limit: int) -> None:
    drained = 0
    try:
        async with asyncio.timeout(_DRAIN_S):
            while drained <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _head_size(scope: Scope) -> int:
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
    return line + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])  # ": " and CRLF


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed one before us
    return None


def problem_render(status: int, detail: str, headers: dict[str, str]) -> Response:
    """The client API's answer: problem+json `body_too_large` (413) or `headers_too_large` (431)."""
    code, title = _CODES[status]
    return problem_response(Problem(status, code, title, detail), headers)


_CODES = {413: ("body_too_large", "Request body too large"), 431: ("headers_too_large", "Request headers too large")}


def client_limit_responses() -> dict[int, dict[str, Any]]:
    """The client API's documented answers to the limits: problem+json 413, 429 (with `Retry-After`) and 431."""
    responses = problem_responses(
        {413: ["body_too_large"], 429: ["rate_limited"], 431: ["headers_too_large"]}
    )  # fmt: skip
    responses[429]["headers"] = {
        "Retry-After": {
            "description": "seconds until this credential may POST again",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    }
    return {status: responses[status] for status in (413, 429, 431)}


def document_limits(app: FastAPI, responses: dict[int, dict[str, Any]]) -> None:
    """Document the limits in `app`'s published document, on every operation as it is: 431 everywhere, 413 where
    a body is taken (POST, PUT, PATCH), 429 (if given) on every POST. Wraps `app.openapi` (after publish_openapi)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for operations in document.get("paths", {}).values():
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                answers["431"] = responses[431]
                if method in ("post", "put", "patch"):
                    answers["413"] = responses[413]
                if method == "post" and 429 in responses:
                    answers.setdefault("429", responses[429])  # a route in another dialect documents its own
                operation["responses"] = dict(sorted(answers.items()))
        return document

    app.openapi = openapi  # type: ignore[method-assign]
