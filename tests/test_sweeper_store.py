"""The sweeper's reports in our database (SQLite and PostgreSQL): saved once per run, the latest one read back
whole, counts for metrics, old reports deleted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mojaflow.database import Database
from mojaflow.sweeper import Finding, FindingKind, SweepPart, SweepReport
from mojaflow.sweeper_store import KEEP_DAYS, latest_counts, latest_report, save_report

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def report(finished: datetime, *, holds: int = 0, gone: int = 0, holds_error: str | None = None) -> SweepReport:
    orphan = [
        Finding(kind=FindingKind.ORPHAN_HOLD, transfer_id=str(uuid.uuid4()), hold_id=f"hold-{n}", state="ABORTED",
                amount="10.00", currency="USD", since=finished - timedelta(hours=1))
        for n in range(holds)
    ]  # fmt: skip
    lost = [
        Finding(kind=FindingKind.WORKFLOW_GONE, transfer_id=str(uuid.uuid4()), state="RECONCILING",
                error_code="sdk_timeout", workflow_status="TERMINATED", since=finished - timedelta(minutes=30))
        for _ in range(gone)
    ]  # fmt: skip
    return SweepReport(
        run_id=str(uuid.uuid4()),
        trigger="schedule",
        started_at=finished - timedelta(seconds=3),
        finished_at=finished,
        holds=SweepPart(checked=holds + 4, findings=orphan, error=holds_error),
        transfers=SweepPart(checked=gone + 2, findings=lost),
    )


async def test_the_latest_report_reads_back_whole_and_a_retried_save_writes_nothing(database: Database) -> None:
    assert await latest_report(database) is None
    counts = await latest_counts(database)
    assert (counts.orphan_holds, counts.workflows_gone, counts.finished_at) == (0, 0, None)

    older, newer = report(T0, holds=1), report(T0 + timedelta(minutes=5), holds=2, gone=1)
    assert await save_report(database, older)
    assert await save_report(database, newer)
    assert not await save_report(database, newer)  # the record activity retried after its commit

    assert await latest_report(database) == newer
    counts = await latest_counts(database)
    assert (counts.orphan_holds, counts.workflows_gone, counts.finished_at, counts.complete) == (
        2, 1, newer.finished_at, True,
    )  # fmt: skip


async def test_a_check_that_did_not_run_makes_the_counts_incomplete(database: Database) -> None:
    await save_report(database, report(T0, gone=1, holds_error="CoreBankingUnavailable"))

    counts = await latest_counts(database)
    saved = await latest_report(database)

    assert (counts.workflows_gone, counts.complete) == (1, False)
    assert saved is not None and saved.holds.error == "CoreBankingUnavailable"


async def test_reports_older_than_the_kept_days_are_deleted(database: Database) -> None:
    old = report(T0, holds=1)
    await save_report(database, old)
    await save_report(database, report(T0 + timedelta(days=KEEP_DAYS - 1), holds=1))
    assert not await save_report(database, old)  # still there

    await save_report(database, report(T0 + timedelta(days=KEEP_DAYS, minutes=1), gone=1))

    assert await save_report(database, old)  # it was deleted: saving it again writes it anew
