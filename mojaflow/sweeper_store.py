"""The sweeper's reports in the app database (migration 0004), for `mojaflow transfers stuck` and for metrics.

Tables in mojaflow/sweeper_tables.py. Reports older than `KEEP_DAYS` are deleted as each new one is saved.
`latest_counts` is the seam for a metrics collector: the latest sweep's findings by kind (and when it ran), read
from the database by any process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from mojaflow.database import Database
from mojaflow.sweeper import Finding, FindingKind, SweepPart, SweepReport
from mojaflow.sweeper_tables import sweep_findings, sweep_runs

__all__ = ["KEEP_DAYS", "SweepCounts", "latest_counts", "latest_report", "save_report"]

KEEP_DAYS = 7

_r, _f = sweep_runs.c, sweep_findings.c


def _aware(value: datetime) -> datetime:  # SQLite hands our UTC times back naive
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def save_report(database: Database, report: SweepReport) -> bool:
    """Save the sweep and its findings in one transaction; False if this run was saved already (a retry).
    Deletes the reports older than KEEP_DAYS."""
    run = {
        "run_id": report.run_id,
        "trigger": report.trigger,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "holds_checked": report.holds.checked,
        "holds_truncated": report.holds.truncated,
        "holds_error": report.holds.error,
        "transfers_checked": report.transfers.checked,
        "transfers_truncated": report.transfers.truncated,
        "transfers_error": report.transfers.error,
        "findings": len(report.findings),
    }
    insert = postgresql.insert if database.engine.dialect.name == "postgresql" else sqlite.insert
    async with database.engine.begin() as connection:
        created = (await connection.execute(insert(sweep_runs).values(run).on_conflict_do_nothing())).rowcount
        if not created:
            return False
        rows = [
            {"run_id": report.run_id, "position": position,
             **finding.model_dump(exclude={"since"}, mode="json"), "since": finding.since}
            for position, finding in enumerate(report.findings)
        ]  # fmt: skip
        if rows:
            await connection.execute(sweep_findings.insert(), rows)
        cutoff = report.finished_at - timedelta(days=KEEP_DAYS)
        old = select(_r.run_id).where(_r.finished_at < cutoff).scalar_subquery()
        await connection.execute(delete(sweep_findings).where(_f.run_id.in_(old)))
        await connection.execute(delete(sweep_runs).where(_r.finished_at < cutoff))
    return True


def _part(checked: int, truncated: bool, error: str | None, findings: list[Finding]) -> SweepPart:
    return SweepPart(checked=checked, truncated=truncated, error=error, findings=findings)


async def latest_report(database: Database) -> SweepReport | None:
    """The most recent sweep (by its end) with its findings, or None if none ran yet."""
    async with database.engine.connect() as connection:
        run = (await connection.execute(select(sweep_runs).order_by(_r.finished_at.desc()).limit(1))).first()
        if run is None:
            return None
        rows = (
            await connection.execute(select(sweep_findings).where(_f.run_id == run.run_id).order_by(_f.position))
        ).all()
    findings = [
        Finding(kind=FindingKind(row.kind), transfer_id=row.transfer_id, hold_id=row.hold_id, state=row.state,
                error_code=row.error_code, workflow_status=row.workflow_status, amount=row.amount,
                currency=row.currency, since=_aware(row.since))
        for row in rows
    ]  # fmt: skip
    return SweepReport(
        run_id=run.run_id,
        trigger=run.trigger,
        started_at=_aware(run.started_at),
        finished_at=_aware(run.finished_at),
        holds=_part(run.holds_checked, run.holds_truncated, run.holds_error,
                    [f for f in findings if f.kind is FindingKind.ORPHAN_HOLD]),
        transfers=_part(run.transfers_checked, run.transfers_truncated, run.transfers_error,
                        [f for f in findings if f.kind is FindingKind.WORKFLOW_GONE]),
    )  # fmt: skip


@dataclass(frozen=True)
class SweepCounts:
    """What a metrics collector exports: the latest sweep's findings by kind, when it finished, and whether each
    check ran to its end (an error or a truncated listing means the counts are a lower bound)."""

    orphan_holds: int
    workflows_gone: int
    finished_at: datetime | None
    complete: bool


async def latest_counts(database: Database) -> SweepCounts:
    """The latest sweep's counts (zeros and `finished_at` None before the first sweep)."""
    async with database.engine.connect() as connection:
        run = (await connection.execute(select(sweep_runs).order_by(_r.finished_at.desc()).limit(1))).first()
        if run is None:
            return SweepCounts(0, 0, None, complete=False)
        query = select(_f.kind, func.count()).where(_f.run_id == run.run_id).group_by(_f.kind)
        counts: dict[str, int] = {kind: count for kind, count in (await connection.execute(query)).all()}
    complete = not (run.holds_truncated or run.transfers_truncated or run.holds_error or run.transfers_error)
    return SweepCounts(
        orphan_holds=counts.get(FindingKind.ORPHAN_HOLD.value, 0),
        workflows_gone=counts.get(FindingKind.WORKFLOW_GONE.value, 0),
        finished_at=_aware(run.finished_at),
        complete=complete,
    )
