"""Logging for every process of ours: structured (structlog), one line per record, nothing that could carry
personal data.

`MOJAFLOW_LOG_FORMAT=json` (the default; `make run` sets `console`) writes one JSON object per line, with at least
`timestamp` (UTC, ISO 8601), `level`, `logger` and `event` (the message), and `transferId`, `workflowId`, `runId`
on every line of a transfer's work (mojaflow/log_context.py); `console` writes the same fields for people.
Every record goes through the same processors, whoever logged it: our `logging.getLogger(...)` calls and
`structlog.get_logger()`, uvicorn, temporalio (structlog's `ProcessorFormatter` on the root handler).

Personal data: httpx logs every request URL at INFO, and our URLs carry party ids (`/parties/MSISDN/2564...`), so
its request log is silenced; and `/parties/{type}/{id}` is redacted in every field of every line (access logs
included). Tracebacks are plain text, never with local variables (rich's, which structlog would use, shows them).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from structlog.types import Processor

from mojaflow.log_context import add_transfer_context

__all__ = ["configure_logging", "redact_path"]

# `/parties/{type}/{id}` (the SDK's and the CBS's lookups) and `/accounts/{type}/{id}` (Send Money's DELETE)
_PARTY_PATH = re.compile(r"(/(?:parties|accounts)/[^/?\s]+/)[^?\s\"]+")
_QUIET = ("httpx", "httpcore")  # their INFO lines are request URLs


def redact_path(path: str) -> str:
    """`/parties/MSISDN/25644444444/1` → `/parties/MSISDN/***`; `/accounts/MSISDN/2564…` → `/accounts/MSISDN/***`."""
    return _PARTY_PATH.sub(r"\1***", path)


def _redact_party_paths(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and ("/parties/" in value or "/accounts/" in value):
            event[key] = redact_path(value)
    return event


def _fields_first(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """timestamp, level, logger, event, then the rest: a line reads the same way each time."""
    first = {key: event.pop(key) for key in ("timestamp", "level", "logger", "event") if key in event}
    return {**first, **event}


def _shared_processors() -> list[Processor]:
    """Run on every record, a stdlib one (`foreign_pre_chain`) or structlog's own, before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_transfer_context,
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(log_format: Literal["json", "console"]) -> list[Processor]:
    """The traceback becomes a string field first (plain text, one JSON string), so the redaction sees it too."""
    protections: list[Processor] = [structlog.processors.format_exc_info, _redact_party_paths]
    if log_format == "json":
        return [*protections, _fields_first, structlog.processors.JSONRenderer(ensure_ascii=False)]
    return [
        *protections,
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
    ]


def configure_logging(level: str = "INFO", log_format: Literal["json", "console"] = "json") -> None:
    """Route every logger of this process through structlog, rendered as `log_format`, to stderr."""
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(log_format)],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers, were any set
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)  # `warnings.warn` through the same handler, not a bare line on stderr
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
