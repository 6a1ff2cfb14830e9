"""The sweeper's activities (workflows/sweeper.py; what they find: mojaflow/sweeper.py). They read the CBS, our
database and Temporal, save the report and log it; they never commit, release, signal or terminate anything.

Both checks are bounded per sweep (`MAX_HOLDS`, `MAX_TRANSFERS`, oldest first: the longest stuck come first) and
say so when they stop at the bound. A candidate is confirmed just before it is reported (the hold still HELD, the
transfer still not final), so a transfer ending while the sweep runs is not reported.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.core_banking import CoreBankingClient, HoldRef, ListedHold
from activities.errors import CoreBankingRefused
from mojaflow.database import Database, transfers
from mojaflow.models import FINAL_STATES
from mojaflow.sweeper import Finding, FindingKind, SweepPart, SweepReport, SweepWindow
from mojaflow.sweeper_store import save_report

__all__ = ["MAX_HOLDS", "MAX_TRANSFERS", "SweeperActivities", "transfer_of_hold_key"]

log = logging.getLogger("mojaflow.sweeper")

PAGE = 200
MAX_HOLDS = 5000  # per sweep; the next sweep starts again from the oldest
MAX_TRANSFERS = 1000
_DESCRIBES = 10  # Temporal descriptions in flight at once
_FINAL = frozenset(state.value for state in FINAL_STATES)
_t = transfers.c


def transfer_of_hold_key(hold_key: str) -> str | None:
    """Our outbound workflow holds with `{transferId}-hold` (workflows/outbound_transfer.py)."""
    transfer_id = hold_key.removesuffix("-hold")
    return transfer_id if transfer_id != hold_key and transfer_id else None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SweeperActivities:
    """Built by the worker with its CBS client, its database and the grace period; Temporal through the
    activity's own client (`activity.client()`), unless one is given."""

    def __init__(
        self, cbs: CoreBankingClient, database: Database, *, grace_s: float, client: Client | None = None
    ) -> None:
        self._cbs = cbs
        self._database = database
        self._grace = timedelta(seconds=grace_s)
        self._client = client

    # -- holds left open at the CBS -------------------------------------------------------------------

    @activity.defn
    async def find_orphan_holds(self, window: SweepWindow) -> SweepPart:
        """Holds HELD at the CBS since before `now - grace` whose transfer is final in our database or unknown."""
        checked, cursor, findings = 0, None, []
        while True:
            page = await self._cbs.list_open_holds(created_before=window.now - self._grace, limit=PAGE, cursor=cursor)
            checked += len(page.holds)
            findings += await self._orphans(page.holds)
            activity.heartbeat(checked)
            cursor = page.next_cursor
            if cursor is None:
                return SweepPart(checked=checked, findings=findings)
            if checked >= MAX_HOLDS:
                return SweepPart(checked=checked, truncated=True, findings=findings)

    async def _orphans(self, holds: list[ListedHold]) -> list[Finding]:
        by_transfer = {hold.hold_id: transfer_of_hold_key(hold.hold_key) for hold in holds}
        ids = [transfer_id for transfer_id in by_transfer.values() if transfer_id]
        known: dict[str, Any] = {}
        if ids:
            query = select(_t.transfer_id, _t.current_state, _t.resource).where(_t.transfer_id.in_(ids))
            async with self._database.engine.connect() as connection:
                known = {row.transfer_id: row for row in (await connection.execute(query)).all()}
        findings = []
        for hold in holds:
            transfer_id = by_transfer[hold.hold_id]
            row = known.get(transfer_id) if transfer_id else None
            if row is not None and row.current_state not in _FINAL:
                continue  # its workflow still decides (and if it is gone, the other check says so)
            if not await self._still_held(hold.hold_id):
                continue  # committed or released since the listing
            findings.append(
                Finding(
                    kind=FindingKind.ORPHAN_HOLD,
                    transfer_id=transfer_id,
                    hold_id=hold.hold_id,
                    state=row.current_state if row is not None else None,
                    error_code=(row.resource.get("lastError") or {}).get("code") if row is not None else None,
                    amount=hold.amount,
                    currency=hold.currency,
                    since=hold.created_at,
                )
            )
        return findings

    async def _still_held(self, hold_id: str) -> bool:
        try:
            return await self._cbs.hold_status(HoldRef(hold_id=hold_id)) == "HELD"
        except CoreBankingRefused:  # hold_not_found: nothing is blocked any more
            return False

    # -- transfers whose workflow is gone ---------------------------------------------------------------

    @activity.defn
    async def find_workflows_gone(self, window: SweepWindow) -> SweepPart:
        """Transfers not final in our database, in their state since before `now - grace`, whose workflow (by id,
        its latest run) is not running in Temporal."""
        query = (
            select(_t.transfer_id, _t.workflow_id, _t.current_state, _t.updated_at, _t.resource)
            .where(_t.current_state.not_in(_FINAL) & (_t.updated_at <= window.now - self._grace))
            .order_by(_t.updated_at, _t.transfer_id)
            .limit(MAX_TRANSFERS + 1)
        )
        async with self._database.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        truncated = len(rows) > MAX_TRANSFERS
        rows = rows[:MAX_TRANSFERS]
        slots = asyncio.Semaphore(_DESCRIBES)

        async def status_of(workflow_id: str) -> str:
            async with slots:
                return await self._workflow_status(workflow_id)

        statuses = await asyncio.gather(*(status_of(row.workflow_id) for row in rows))
        gone = [(row, status) for row, status in zip(rows, statuses, strict=True) if status != "RUNNING"]
        still_open = await self._not_final([row.transfer_id for row, _ in gone])
        findings = [
            Finding(
                kind=FindingKind.WORKFLOW_GONE,
                transfer_id=row.transfer_id,
                hold_id=row.resource.get("holdId"),
                state=row.current_state,
                error_code=(row.resource.get("lastError") or {}).get("code"),
                workflow_status=status,
                amount=row.resource.get("amount"),
                currency=row.resource.get("currency"),
                since=_aware(row.updated_at),
            )
            for row, status in gone
            if row.transfer_id in still_open
        ]
        return SweepPart(checked=len(rows), truncated=truncated, findings=findings)

    async def _workflow_status(self, workflow_id: str) -> str:
        client = self._client or activity.client()
        try:
            status = (await client.get_workflow_handle(workflow_id).describe()).status
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return "NOT_FOUND"
            raise
        return status.name if isinstance(status, WorkflowExecutionStatus) else "UNKNOWN"

    async def _not_final(self, transfer_ids: list[str]) -> set[str]:
        """Of these, the ones still not final now (a workflow may have ended cleanly since the first read)."""
        if not transfer_ids:
            return set()
        query = select(_t.transfer_id).where(_t.transfer_id.in_(transfer_ids) & _t.current_state.not_in(_FINAL))
        async with self._database.engine.connect() as connection:
            return set((await connection.execute(query)).scalars())

    # -- the report ---------------------------------------------------------------------------------------

    @activity.defn
    async def record_sweep(self, report: SweepReport) -> None:
        """Save the report (once per run) and log a line per finding: ids, states and ages only."""
        if not await save_report(self._database, report):
            return  # a retry of a save that committed: logged then
        for part, name in ((report.holds, "holds"), (report.transfers, "transfers")):
            if part.error:
                log.warning("sweeper could not check %s: %s", name, part.error)
            if part.truncated:
                log.warning("sweeper checked the %d oldest %s only; the rest next time", part.checked, name)
        for finding in report.findings:
            age_s = int((report.started_at - finding.since).total_seconds())
            log.warning(
                "sweeper found %s: transfer %s, hold %s, state %s, error %s, workflow %s, for %d s",
                finding.kind.value, finding.transfer_id or "-", finding.hold_id or "-", finding.state or "unknown",
                finding.error_code or "-", finding.workflow_status or "-", age_s,
            )  # fmt: skip
        log.info(
            "sweeper checked %d holds and %d transfers: %d finding(s)",
            report.holds.checked, report.transfers.checked, len(report.findings),
        )  # fmt: skip
