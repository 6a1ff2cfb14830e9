"""`mojaflow transfers list|show|export`: operators' views of transfers (registered in `mojaflow.cli`).

    mojaflow transfers list --state RECONCILING --older-than 10m     # in that state for over 10 minutes
    mojaflow transfers show 5b1c…                                     # its states, decisions, audit, deliveries
    mojaflow transfers export --date 2026-12-03 > 2026-12-03.csv      # the day's transfers, for reconciliation

They read the database of the settings (`MOJAFLOW_DATABASE_URL`, else the data dir's), which must be the API's and
the workers', without the secrets ring: no name, party id or account is ever printed (mojaflow/transfer_reports.py).
Messages go to stderr, so stdout holds only what a script reads.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from sqlalchemy.exc import SQLAlchemyError

from mojaflow import transfer_reports as reports
from mojaflow.database import Database
from mojaflow.models import Direction, TransferState
from mojaflow.settings import Settings

__all__ = ["export_day", "list_transfers", "show_transfer"]

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _run(action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        database = Database(Settings().resolved_database_url)  # no secrets ring: personal data stays sealed
        try:
            return await action(database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except ValueError as error:  # a malformed setting: say which, no traceback
        typer.echo(f"mojaflow transfers: {error}", err=True)
        raise typer.Exit(2) from None
    except (SQLAlchemyError, OSError) as error:  # the first line of the driver's words; never the URL (a password)
        cause = getattr(error, "orig", None) or error
        first = (str(cause).splitlines() or [""])[0]
        typer.echo(
            f"mojaflow transfers: cannot read the database of MOJAFLOW_DATABASE_URL (or MOJAFLOW_DATA_DIR): "
            f"{type(cause).__name__}: {first}",
            err=True,
        )
        raise typer.Exit(2) from None


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match is None:
        hint = "a number and a unit, s, m, h or d (e.g. 10m, 1.5h, 2d)"
        raise typer.BadParameter(f"{value!r}: {hint}", param_hint="'--older-than'")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: a date as YYYY-MM-DD", param_hint="'--date'") from None


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = "an IANA time zone, e.g. UTC or Africa/Kampala"
        raise typer.BadParameter(f"{value!r}: {hint}", param_hint="'--timezone'") from None


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _age(since: datetime, now: datetime) -> str:
    """45s, 12m, 3h12m, 2d4h."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    return f"{seconds // 86_400}d{seconds % 86_400 // 3600}h"


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def list_transfers(
    state: Annotated[TransferState | None, typer.Option(help="only transfers in this state")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="in their current state for longer than this (10m, 2h, 1d)")
    ] = None,
    direction: Annotated[Direction | None, typer.Option(help="OUTBOUND or INBOUND")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many lines")] = 100,
) -> None:
    """Transfers, longest in their current state first: e.g. the RECONCILING or SETTLING ones stuck for 10m."""
    age = _duration(older_than)
    now = datetime.now(UTC)
    lines = _run(
        lambda db: reports.list_lines(
            db, state=state, direction=direction.value if direction else None, older_than=age, limit=limit, now=now
        )
    )
    if not lines:
        typer.echo("no transfer matches", err=True)
        return
    rows = [("TRANSFER ID", "DIRECTION", "STATE", "SINCE", "FOR", "ERROR", "CLIENT_KEY", "HOME TRANSACTION ID")]
    rows += [
        (line.transfer_id, line.direction, line.state, _time(line.updated_at), _age(line.updated_at, now),
         line.error_code or "-", line.client_key or "-", line.home_transaction_id or "-")
        for line in lines
    ]  # fmt: skip
    _table(rows)


def show_transfer(
    transfer_id: Annotated[str, typer.Argument(help="our transferId or the SDK's")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of text")] = False,
) -> None:
    """One transfer: where it stands, its states in order, the CBS's decisions, the audit trail, its webhooks."""
    report = _run(lambda db: reports.transfer_report(db, transfer_id))
    if report is None:
        typer.echo(f"mojaflow transfers: no transfer {transfer_id}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(_document(report), indent=2))
        return
    view = report.view
    quote = view.quote
    typer.echo(f"transfer    {view.transfer_id}  {view.direction.value}  {view.current_state.value}"
               f"{' (final)' if report.final else ''}")  # fmt: skip
    typer.echo(f"workflow    {report.workflow_id}  (client_key {report.client_key or '-'})")
    typer.echo(f"references  home {view.home_transaction_id or '-'}  sdk {view.sdk_transfer_id or '-'}  "
               f"hold {view.hold_id or '-'}")  # fmt: skip
    amounts = f"{view.amount} {view.currency}"
    if quote:
        amounts += f"  (quote: transfer {quote.transfer_amount}, payee receives {quote.payee_receive_amount}, fees "
        amounts += f"{quote.fees}, commission {quote.commission})"
    typer.echo(f"amount      {amounts}")
    typer.echo(f"received    {_time(report.created_at)}  last change {_time(report.updated_at)}")
    if view.last_error:
        error = view.last_error
        typer.echo(f"last error  {error.code} {error.fspiop_error_code or ''}: {error.message}")
    typer.echo("states:")
    for change in report.history:
        typer.echo(f"  {change.sequence:>3}  {_time(change.occurred_at)}  {change.state}"
                   f"{'  ' + change.error_code if change.error_code else ''}")  # fmt: skip
    typer.echo("decisions:" if view.decisions else "decisions: none")
    for decision in view.decisions:
        verdict = "accepted" if decision.accepted else "rejected"
        typer.echo(f"  {_time(decision.decided_at)}  {decision.state.value} {verdict} by {decision.actor or '-'}")
    if view.resolution:
        done = view.resolution
        typer.echo(f"resolution  {done.outcome} by {done.actor} at {_time(done.resolved_at)} "
                   f"(was {done.resolved_from.value}): {done.reason}")  # fmt: skip
    typer.echo("audit:" if report.audit else "audit: none")
    for entry in report.audit:
        typer.echo(f"  {_time(entry.at)}  {entry.action} by {entry.actor}{': ' + entry.detail if entry.detail else ''}")
    typer.echo("webhook deliveries:" if report.deliveries else "webhook deliveries: none")
    for delivery in report.deliveries:
        typer.echo(f"  {delivery.delivery_id}  {delivery.status.value}  cycle {delivery.cycle}, "
                   f"{delivery.attempts} attempt(s), last {_time(delivery.last_attempt_at)}")  # fmt: skip


def _document(report: reports.TransferReport) -> dict[str, Any]:
    return {
        "transfer": report.view.model_dump(mode="json", by_alias=True, exclude_none=True),
        "final": report.final,
        "workflowId": report.workflow_id,
        "clientKey": report.client_key,
        "receivedAt": _time(report.created_at),
        "updatedAt": _time(report.updated_at),
        "states": [
            {"sequence": c.sequence, "state": c.state, "at": _time(c.occurred_at), "errorCode": c.error_code}
            for c in report.history
        ],
        "audit": [{**asdict(entry), "at": _time(entry.at)} for entry in report.audit],
        "webhookDeliveries": [d.model_dump(mode="json", by_alias=True, exclude_none=True) for d in report.deliveries],
    }


def export_day(
    day: Annotated[str, typer.Option("--date", help="the day, YYYY-MM-DD")],
    timezone: Annotated[str, typer.Option("--timezone", help="whose midnight starts the day (IANA name)")] = "UTC",
) -> None:
    """CSV of the day's transfers (received that day): states, amounts, fees, hold ids; no names or party ids."""
    start, end = reports.day_range(_day(day), _zone(timezone))

    async def write(database: Database) -> int:
        writer = csv.DictWriter(sys.stdout, fieldnames=reports.EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        count = 0
        async for row in reports.export_rows(database, start, end):
            writer.writerow(row)
            count += 1
        return count

    count = _run(write)
    sys.stdout.flush()
    typer.echo(f"{count} transfer(s) received from {_time(start)} to {_time(end)}", err=True)
