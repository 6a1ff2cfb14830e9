"""What operators read about transfers, from our database (the `mojaflow transfers` commands,
mojaflow/transfer_commands.py): transfers in a state for too long, one transfer's whole story, a day's export.

Everything here is read with a Database given no secrets ring, so names, party ids and accounts are never even
decrypted: nothing an operator prints or exports can carry them. Times from SQLite come back naive: ours are UTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mojaflow.audit import AuditEntry, audit_entries
from mojaflow.database import Database, transfers
from mojaflow.models import FINAL_STATES, TransferState, TransferView
from mojaflow.personal_data import unseal_transfer
from mojaflow.webhook_delivery_queries import DeliveryView, list_deliveries
from mojaflow.webhook_tables import webhook_events

__all__ = [
    "EXPORT_COLUMNS",
    "StateChange",
    "TransferLine",
    "TransferReport",
    "day_range",
    "export_rows",
    "list_lines",
    "transfer_report",
]

_t = transfers.c

EXPORT_COLUMNS = (
    "transferId", "direction", "clientKey", "homeTransactionId", "sdkTransferId", "receivedAt", "finishedAt",
    "currentState", "final", "errorCode", "fspiopErrorCode", "currency", "amount", "transferAmount",
    "payeeReceiveAmount", "fees", "commission", "holdId",
)  # fmt: skip


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _view(resource: dict[str, Any]) -> TransferView:
    return TransferView.model_validate(unseal_transfer(resource, None))  # no ring: no personal field


@dataclass(frozen=True)
class TransferLine:
    """One transfer in a listing: what it is, where it stands and since when."""

    transfer_id: str
    direction: str
    state: str
    client_key: str | None
    home_transaction_id: str | None
    created_at: datetime
    updated_at: datetime  # when its current state was saved
    error_code: str | None


async def list_lines(
    database: Database,
    *,
    state: TransferState | None = None,
    direction: str | None = None,
    older_than: timedelta | None = None,
    limit: int = 100,
    now: datetime | None = None,
) -> list[TransferLine]:
    """Transfers (in `state`, whose current state was saved more than `older_than` ago), longest-waiting first."""
    query = select(_t.transfer_id, _t.direction, _t.current_state, _t.client_key, _t.home_transaction_id,
                   _t.created_at, _t.updated_at, _t.resource)  # fmt: skip
    if state is not None:
        query = query.where(_t.current_state == state.value)
    if direction is not None:
        query = query.where(_t.direction == direction)
    if older_than is not None:
        query = query.where(_t.updated_at <= (now or datetime.now(UTC)) - older_than)
    query = query.order_by(_t.updated_at, _t.transfer_id).limit(limit)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        TransferLine(
            row.transfer_id,
            row.direction,
            row.current_state,
            row.client_key,
            row.home_transaction_id,
            _aware(row.created_at),
            _aware(row.updated_at),
            (row.resource.get("lastError") or {}).get("code"),
        )  # fmt: skip
        for row in rows
    ]


@dataclass(frozen=True)
class StateChange:
    """One saved state, as its webhook event recorded it (one per state, written with it: the outbox)."""

    sequence: int
    state: str
    occurred_at: datetime
    error_code: str | None


@dataclass(frozen=True)
class TransferReport:
    view: TransferView  # without names or party ids
    workflow_id: str
    client_key: str | None
    created_at: datetime
    updated_at: datetime
    history: list[StateChange]
    audit: list[AuditEntry]
    deliveries: list[DeliveryView]  # oldest first

    @property
    def final(self) -> bool:
        return self.view.current_state in FINAL_STATES


async def transfer_report(database: Database, transfer_id: str) -> TransferReport | None:
    """By our transferId or the SDK's: the resource, its states in order, the audit trail and the deliveries."""
    query = select(_t.transfer_id, _t.resource, _t.workflow_id, _t.client_key, _t.created_at, _t.updated_at).where(
        (_t.transfer_id == transfer_id) | (_t.sdk_transfer_id == transfer_id)
    )
    async with database.engine.connect() as connection:
        row = (await connection.execute(query.limit(1))).first()
        if row is None:
            return None
        events = (
            await connection.execute(
                select(webhook_events.c.sequence, webhook_events.c.data, webhook_events.c.occurred_at)
                .where(webhook_events.c.transfer_id == row.transfer_id)
                .order_by(webhook_events.c.sequence)
            )
        ).all()
    history = [
        StateChange(e.sequence, e.data["currentState"], _aware(e.occurred_at),
                    (e.data.get("lastError") or {}).get("code"))
        for e in events
    ]  # fmt: skip
    deliveries = await list_deliveries(database, client_key=None, transfer_id=row.transfer_id, limit=1000)
    return TransferReport(
        view=_view(row.resource),
        workflow_id=row.workflow_id,
        client_key=row.client_key,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        history=history,
        audit=await audit_entries(database, transfer_id=row.transfer_id, limit=1000),
        deliveries=[view for view, _ in reversed(deliveries)],
    )


def day_range(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The day from its midnight to the next, in `zone`, as UTC (a DST day is 23 or 25 hours long)."""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def export_rows(database: Database, start: datetime, end: datetime) -> AsyncIterator[dict[str, str]]:
    """The transfers received in [start, end), oldest first, one `EXPORT_COLUMNS` row each (streamed)."""
    query = (
        select(_t.resource, _t.client_key, _t.created_at)
        .where((_t.created_at >= start.astimezone(UTC)) & (_t.created_at < end.astimezone(UTC)))
        .order_by(_t.created_at, _t.transfer_id)
    )
    async with database.engine.connect() as connection:
        async for row in await connection.stream(query):
            yield _export_row(_view(row.resource), row.client_key, _aware(row.created_at))


def _export_row(view: TransferView, client_key: str | None, created_at: datetime) -> dict[str, str]:
    quote, error, finished = view.quote, view.last_error, view.timestamps.finished_at
    values: dict[str, str | None] = {
        "transferId": view.transfer_id,
        "direction": view.direction.value,
        "clientKey": client_key,
        "homeTransactionId": view.home_transaction_id,
        "sdkTransferId": view.sdk_transfer_id,
        "receivedAt": _iso(created_at),
        "finishedAt": _iso(finished) if finished else None,
        "currentState": view.current_state.value,
        "final": "true" if view.current_state in FINAL_STATES else "false",
        "errorCode": error.code if error else None,
        "fspiopErrorCode": error.fspiop_error_code if error else None,
        "currency": view.currency,
        "amount": view.amount,
        "transferAmount": quote.transfer_amount if quote else None,
        "payeeReceiveAmount": quote.payee_receive_amount if quote else None,
        "fees": quote.fees if quote else None,
        "commission": quote.commission if quote else None,
        "holdId": view.hold_id,
    }
    return {column: values[column] or "" for column in EXPORT_COLUMNS}


def _iso(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")
