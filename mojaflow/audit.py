"""The audit log: who did what to which transfer, and when. Append-only (the database refuses UPDATE and DELETE).

An actor is `api_key:<key_id>` (a client API key), a token's subject (`token:<sub>`, once tokens exist), `cli`
(the `mojaflow` command) or `anonymous` (`MOJAFLOW_AUTH=none`). `detail` says the outcome in our vocabulary
(states, codes, key ids): never names, party ids or accounts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NotRequired, TypedDict, Unpack

from sqlalchemy import select

from mojaflow.database import Database, audit_log

__all__ = ["AuditAction", "AuditEntry", "audit_entries", "decision_action", "record_action", "record_action_or_log"]

log = logging.getLogger("mojaflow.audit")

_DETAIL_MAX = 200


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    client_key: str | None
    action: str
    transfer_id: str | None
    detail: str | None


class AuditAction(TypedDict):
    """One entry's fields, as `record_action` and `record_action_or_log` take them (keyword arguments)."""

    actor: str
    action: str
    client_key: NotRequired[str | None]
    transfer_id: NotRequired[str | None]
    detail: NotRequired[str | None]


async def record_action(database: Database, **entry: Unpack[AuditAction]) -> None:
    """Append one entry (now)."""
    detail = entry.get("detail")
    async with database.engine.begin() as connection:
        await connection.execute(
            audit_log.insert().values(
                at=datetime.now(UTC),
                actor=entry["actor"],
                client_key=entry.get("client_key"),
                action=entry["action"],
                transfer_id=entry.get("transfer_id"),
                detail=detail[:_DETAIL_MAX] if detail else detail,
            )
        )


async def record_action_or_log(database: Database, **entry: Unpack[AuditAction]) -> None:
    """`record_action`, for what already happened (a decision the workflow took): a database that fails now
    leaves an error log line instead of an error answer; the transfer's own `decisions` keep the actor anyway."""
    try:
        await record_action(database, **entry)
    except Exception as error:  # the action is done: say it could not be recorded, and answer
        log.error("audit entry %s by %s not written: %s", entry["action"], entry["actor"], type(error).__name__)


def decision_action(*, accept_party: bool | None, accept_quote: bool | None) -> str:
    """`accept_party`, `reject_party`, `accept_quote` or `reject_quote`."""
    if accept_party is not None:
        return "accept_party" if accept_party else "reject_party"
    return "accept_quote" if accept_quote else "reject_quote"


async def audit_entries(database: Database, *, transfer_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The latest entries (of one transfer, if given), oldest first."""
    query = select(
        audit_log.c.at, audit_log.c.actor, audit_log.c.client_key, audit_log.c.action, audit_log.c.transfer_id,
        audit_log.c.detail,
    )  # fmt: skip
    if transfer_id is not None:
        query = query.where(audit_log.c.transfer_id == transfer_id)
    query = query.order_by(audit_log.c.id.desc()).limit(limit)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [AuditEntry(*row) for row in reversed(rows)]
