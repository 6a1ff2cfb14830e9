"""`GET /holds?status=HELD`: the query of the CBS simulator's listing of open holds, and its opaque cursor.

Every refusal is `BadRequest` naming the parameter (rendered `400 invalid_request`). The cursor is the
`(createdAt, holdId)` of the previous page's last hold, base64url-encoded JSON: opaque to callers, checked here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators._common import BadRequest

__all__ = ["MAX_LIMIT", "HoldsQuery", "encode_cursor", "open_holds_query"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(frozen=True)
class HoldsQuery:
    created_before: str | None  # in the ledger's own format (ms and `Z`), so text order is time order
    after: tuple[str, str] | None
    limit: int


def encode_cursor(after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, hold_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("cursor: not a nextCursor this server gave") from None
    if not isinstance(created_at, str) or not isinstance(hold_id, str):
        raise BadRequest("cursor: not a nextCursor this server gave")
    return created_at, hold_id


def _ledger_time(value: str) -> str:
    """An RFC 3339 instant with an offset, in the ledger's format rounded up to the millisecond (a hold at
    .123000 is before .123456, so the bound becomes .124)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("createdBefore: an RFC 3339 date-time such as 2026-12-03T12:00:00Z") from None
    if moment.tzinfo is None:
        raise BadRequest("createdBefore: needs an offset or Z")
    moment = moment.astimezone(UTC)
    micros = moment.microsecond
    moment = moment.replace(microsecond=0) + timedelta(milliseconds=math.ceil(micros / 1000))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_holds_query(params: Any) -> HoldsQuery:
    """Validate the query parameters (a Starlette `QueryParams` or any mapping)."""
    status = params.get("status")
    if status is None:
        raise BadRequest("status: required; only HELD is listed")
    if status != "HELD":
        raise BadRequest("status: only HELD is listed")
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise BadRequest(f"limit: an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    before = params.get("createdBefore")
    cursor = params.get("cursor")
    return HoldsQuery(
        created_before=_ledger_time(before) if before is not None else None,
        after=_decode_cursor(cursor) if cursor is not None else None,
        limit=limit,
    )
