"""Plumbing shared by the simulators: time, SQLite, body parsing, the app's frame, redacted logging and the uvicorn
runner.

Request logs name the matched route template (`/parties/{idType}/{idValue}`), never the concrete path, because
paths carry party ids and account ids; uvicorn's own access log is switched off for the same reason.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BadRequest",
    "RedactedAccessLog",
    "configure_logging",
    "describe_errors",
    "answer_invalid_requests",
    "iso_now",
    "mojaloop_amount",
    "open_db",
    "read_json",
    "read_model",
    "run_server",
    "simulator_app",
]

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """The request body is not JSON or does not fit the schema: each app renders it in its own error dialect."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def iso_now(offset_s: float = 0.0) -> str:
    """UTC time as Mojaloop writes it: ISO 8601 with milliseconds and `Z`."""
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mojaloop_amount(value: Decimal) -> str:
    """Mojaloop's amount format: no exponent, no trailing zeros ("150.00" → "150", "0.50" → "0.5")."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def open_db(path: Path) -> sqlite3.Connection:
    """One autocommit connection in WAL mode; callers open explicit transactions with `BEGIN IMMEDIATE`.

    All handlers run on the event loop thread and never await inside a transaction, so the single connection
    serialises writers without locks.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


async def read_json(request: Request) -> Any:
    """The body as JSON, or `BadRequest` (an empty or malformed body is the client's fault, never a 500)."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def describe_errors(exc: ValidationError) -> str:
    """A short, field-naming description of pydantic errors, without echoing input values (they may be PII)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def read_model(request: Request, model: type[M]) -> M:
    """Parse and validate the body into `model`, raising `BadRequest` naming the failing fields."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc)) from None


class RedactedAccessLog:
    """ASGI middleware: one log line per request with the route template, status and duration.

    Pure ASGI (not `BaseHTTPMiddleware`) so that `request.is_disconnected()` keeps working in handlers.
    """

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.logger.info("%s %s -> %s (%.1f ms)", scope["method"], template, status or "-", elapsed_ms)


def simulator_app(
    title: str, logger: logging.Logger, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]
) -> FastAPI:
    """A simulator's app before its own routes: no docs or OpenAPI, the redacted access log, `GET /health`."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(RedactedAccessLog, logger=logger)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def answer_invalid_requests(app: FastAPI) -> None:
    """A body that is not JSON or misses the schema: 400 `invalid_request`, in the dialect of the CBS, token server
    and webhook receiver simulators (the SDK simulator has its own); FastAPI's own validation errors (a query
    parameter, say) get a fixed message."""

    @app.exception_handler(BadRequest)
    async def _on_bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"code": "invalid_request", "message": exc.message}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"code": "invalid_request", "message": "invalid request"}, status_code=400)


def configure_logging(name: str) -> logging.Logger:
    """Plain stdout logging for the process; returns the simulator's logger."""
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    return logging.getLogger(name)


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn handles both), then stop within a few seconds.

    `timeout_graceful_shutdown` bounds the wait for requests that are deliberately slow (party timeouts,
    hanging money steps), so a shutdown never hangs on them. Uvicorn re-raises the signal it caught once it has
    shut down; our handler turns that into a plain exit with status 0 (no KeyboardInterrupt traceback).
    """

    def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    uvicorn.Server(config).run()
