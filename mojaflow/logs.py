"""Logging for every process of ours: one format, and nothing that could carry personal data.

httpx logs every request URL at INFO, and our URLs carry party ids (`/parties/MSISDN/2564...`), so its
request log is silenced; access logs of our APIs go through `redact_path`.
"""

from __future__ import annotations

import logging
import re

__all__ = ["configure_logging", "redact_path"]

_PARTY_PATH = re.compile(r"(/parties/[^/?\s]+/)[^?\s\"]+")


def redact_path(path: str) -> str:
    """`/parties/MSISDN/25644444444/1` → `/parties/MSISDN/***`."""
    return _PARTY_PATH.sub(r"\1***", path)


class _RedactPartyPaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").addFilter(_RedactPartyPaths())
