"""`mojaflow transfers stuck`: what the latest sweep found (registered in `mojaflow.cli`; the sweeper:
mojaflow/sweeper.py).

    mojaflow transfers stuck            # the latest sweep's findings, from our database
    mojaflow transfers stuck --now      # run a sweep now (a worker runs it) and print what it found
    mojaflow transfers stuck --json     # the same as one JSON document

Ids, states, Temporal statuses, amounts and times only: never a name, party id or account. Messages go to stderr.
It reports; settling a transfer is `mojaflow transfers resolve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from mojaflow.settings import Settings
from mojaflow.sweeper import SWEEPER_WORKFLOW, SweepReport, SweepRequest
from mojaflow.sweeper_store import latest_report
from mojaflow.temporal import TemporalConnectError, connect
from mojaflow.transfer_commands import _age, _run, _table, _time

__all__ = ["stuck"]


def stuck(
    now: Annotated[bool, typer.Option("--now", help="run a sweep now (needs a running worker) and print it")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of text")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="--now: seconds to wait for the sweep")] = 120.0,
) -> None:
    """Holds still open at the CBS after their transfer ended, and transfers whose workflow is gone."""
    if not now:
        _show(_run(latest_report), as_json)
        return
    code = 0
    try:
        _show(_sweep_now(timedelta(seconds=timeout)), as_json)
    except typer.Exit as stop:
        code = stop.exit_code
    # Temporal's core runtime threads may still call into Python while the interpreter finalizes ("Fatal Python
    # error: PyGILState_Release", exit -6): a process that connected to Temporal leaves without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _show(report: SweepReport | None, as_json: bool) -> None:
    if report is None:
        interval = Settings().sweeper_interval_s
        typer.echo(f"no sweep has run yet: the Schedule runs one every {interval:.0f} s; --now runs one", err=True)
    elif as_json:
        typer.echo(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2))
    else:
        _print(report)


def _sweep_now(timeout: timedelta) -> SweepReport:
    settings = Settings()

    async def sweep() -> SweepReport:
        client = await connect(settings)
        started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return await client.execute_workflow(
            SWEEPER_WORKFLOW,
            SweepRequest(trigger="manual"),
            id=f"{settings.sweeper_schedule_id}-manual-{started}",
            task_queue=settings.task_queue,
            execution_timeout=timeout,  # no worker: the run times out, nothing is left waiting
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            result_type=SweepReport,
        )

    try:
        return asyncio.run(sweep())
    except TemporalConnectError as error:
        typer.echo(f"mojaflow transfers stuck: {error}", err=True)
        raise typer.Exit(2) from None
    except WorkflowFailureError:
        typer.echo(
            f"mojaflow transfers stuck: no sweep finished within {timeout.total_seconds():.0f} s: is a worker "
            f"running on task queue {settings.task_queue}?",
            err=True,
        )
        raise typer.Exit(1) from None
    except RPCError as error:
        typer.echo(f"mojaflow transfers stuck: Temporal refused the sweep: {error.status.name}", err=True)
        raise typer.Exit(2) from None


def _print(report: SweepReport) -> None:
    findings = report.findings
    typer.echo(
        f"sweep {_time(report.finished_at)} ({report.trigger}, run {report.run_id}): {report.holds.checked} open "
        f"hold(s) and {report.transfers.checked} transfer(s) in progress checked, {len(findings)} finding(s)"
    )
    for name, part in (("holds", report.holds), ("transfers", report.transfers)):
        if part.error:
            typer.echo(f"  {name} NOT CHECKED: {part.error} (the next sweep tries again)")
        if part.truncated:
            typer.echo(f"  {name}: the {part.checked} oldest only; the rest next sweep")
    if not findings:
        return
    rows = [("KIND", "TRANSFER ID", "STATE", "ERROR", "WORKFLOW", "HOLD ID", "AMOUNT", "SINCE", "FOR")]
    rows += [
        (f.kind.value, f.transfer_id or "-", f.state or "unknown", f.error_code or "-", f.workflow_status or "-",
         f.hold_id or "-", f"{f.amount} {f.currency}" if f.amount else "-", _time(f.since),
         _age(f.since, report.started_at))
        for f in findings
    ]  # fmt: skip
    _table(rows)
