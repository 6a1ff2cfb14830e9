"""`SweeperWorkflow`: one sweep for stuck transfers (what it finds: mojaflow/sweeper.py), started by the Schedule
`mojaflow-sweeper` or by `mojaflow transfers stuck --now`.

Two checks, then the report: a check that cannot run (the CBS down, say) is reported as not run, never as "nothing
found", and the other still runs. It only reads and reports, so it is safe to run at any time, twice at once too.
It always completes (a run no worker picks up times out: the Schedule's execution timeout).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sweeper import SweeperActivities
    from mojaflow.sweeper import SweepPart, SweepReport, SweepRequest, SweepWindow

__all__ = ["CHECK_CALL", "RECORD_CALL", "SweeperWorkflow"]

# A check reads a few thousand rows and pages: minutes at most; tried a few times, then reported as not run.
CHECK_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=5),
    heartbeat_timeout=timedelta(minutes=1),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3),
)
# The report is the sweep's whole point: retried until saved (within the run's execution timeout).
RECORD_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)


@workflow.defn
class SweeperWorkflow:
    @workflow.run
    async def run(self, request: SweepRequest) -> SweepReport:
        started = workflow.now()
        window = SweepWindow(now=started)
        holds = await self._check(SweeperActivities.find_orphan_holds, window)
        transfers = await self._check(SweeperActivities.find_workflows_gone, window)
        report = SweepReport(
            run_id=workflow.info().run_id,
            trigger=request.trigger,
            started_at=started,
            finished_at=workflow.now(),
            holds=holds,
            transfers=transfers,
        )
        await workflow.execute_activity_method(SweeperActivities.record_sweep, report, **RECORD_CALL)
        return report

    async def _check(
        self, check: Callable[[SweeperActivities, SweepWindow], Awaitable[SweepPart]], window: SweepWindow
    ) -> SweepPart:
        try:
            return await workflow.execute_activity_method(check, window, **CHECK_CALL)
        except ActivityError as error:  # the reason's type only: a message could quote an answer
            cause = error.cause
            reason = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
            return SweepPart(error=reason or "failed")
