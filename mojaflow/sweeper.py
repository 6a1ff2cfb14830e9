"""The stuck-transfer sweeper: what it finds, and the Temporal Schedule that runs it.

Every `MOJAFLOW_SWEEPER_INTERVAL_S` the Schedule `MOJAFLOW_SWEEPER_SCHEDULE_ID` (`mojaflow-sweeper`) starts a
`SweeperWorkflow` (workflows/sweeper.py) on the transfers' task queue, which looks for two kinds of trouble
older than `MOJAFLOW_SWEEPER_GRACE_S` (activities/sweeper.py):

* `ORPHAN_HOLD`: a hold still HELD at the CBS (`GET /holds?status=HELD`) whose transfer ended (a final state in
  our database) or is unknown to us: the payer's money is blocked and nothing of ours will free it.
* `WORKFLOW_GONE`: a transfer in progress in our database whose workflow does not run (terminated, timed out,
  never started, its history gone): nothing will move it on.

It reports them (a log line each, a stored report read by `mojaflow transfers stuck`, counts for metrics:
mojaflow/sweeper_store.py) and never commits or releases anything: a person decides (`mojaflow transfers resolve`).

Each worker makes sure the Schedule exists at start (`ensure_sweeper_schedule`): created if missing, updated only
if its spec differs from the worker's settings, so N workers starting together leave one Schedule, unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from mojaflow.models import CamelModel
from mojaflow.settings import Settings

__all__ = [
    "SWEEPER_WORKFLOW",
    "Finding",
    "FindingKind",
    "SweepPart",
    "SweepReport",
    "SweepRequest",
    "SweepWindow",
    "ensure_sweeper_schedule",
    "sweeper_schedule",
    "sweep_timeout",
]

SWEEPER_WORKFLOW = "SweeperWorkflow"  # by name: this package does not import the workflows


class FindingKind(StrEnum):
    ORPHAN_HOLD = "ORPHAN_HOLD"
    WORKFLOW_GONE = "WORKFLOW_GONE"


class Finding(CamelModel):
    """One thing a person should look at. Ids, states and times only: no name, party id, account or amount's
    owner; the amount and currency say how much money a hold blocks."""

    kind: FindingKind
    transfer_id: str | None = None  # None: a hold whose key names no transfer of ours
    hold_id: str | None = None
    state: str | None = None  # our database's current state; None: a transfer unknown to us
    error_code: str | None = None  # its last error's code (e.g. release_failed: the hold is left for a person)
    workflow_status: str | None = None  # Temporal's (TERMINATED, TIMED_OUT, NOT_FOUND, ...), WORKFLOW_GONE only
    amount: str | None = None
    currency: str | None = None
    since: datetime  # the hold's creation, or when the transfer's current state was saved


class SweepRequest(CamelModel):
    trigger: Literal["schedule", "manual"] = "schedule"


class SweepWindow(CamelModel):
    """What one sweep looks at: trouble older than `now - grace`."""

    now: datetime


class SweepPart(CamelModel):
    """One of the two checks: how many it looked at, whether it stopped at its bound, why it could not run."""

    checked: int = 0
    truncated: bool = False
    error: str | None = None
    findings: list[Finding] = Field(default_factory=list)


class SweepReport(CamelModel):
    run_id: str  # the sweep's workflow run id: a retried save of the report writes it once
    trigger: Literal["schedule", "manual"]
    started_at: datetime
    finished_at: datetime
    holds: SweepPart
    transfers: SweepPart

    @property
    def findings(self) -> list[Finding]:
        return [*self.holds.findings, *self.transfers.findings]


def sweep_timeout(settings: Settings) -> timedelta:
    """A sweep that no worker runs (its queue has none) ends timed out, so the Schedule's SKIP never blocks for
    ever; twice the interval, at least 10 minutes."""
    return max(timedelta(seconds=2 * settings.sweeper_interval_s), timedelta(minutes=10))


def sweeper_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SWEEPER_WORKFLOW,
            SweepRequest(trigger="schedule"),
            id=settings.sweeper_schedule_id,  # Temporal appends the scheduled time
            task_queue=settings.task_queue,
            execution_timeout=sweep_timeout(settings),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.sweeper_interval_s))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _same(current: Schedule, wanted: Schedule) -> bool:
    def shape(schedule: Schedule) -> tuple[object, ...]:
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        every = [interval.every for interval in schedule.spec.intervals]
        return (action.workflow, action.task_queue, action.execution_timeout, every, schedule.policy.overlap)

    return isinstance(current.action, ScheduleActionStartWorkflow) and shape(current) == shape(wanted)


async def ensure_sweeper_schedule(client: Client, settings: Settings) -> Literal["created", "updated", "unchanged"]:
    """Create the sweeper's Schedule, or bring an existing one to these settings. Idempotent: a second worker
    (or a restart) with the same settings changes nothing."""
    wanted = sweeper_schedule(settings)
    try:
        await client.create_schedule(settings.sweeper_schedule_id, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(settings.sweeper_schedule_id)
    if _same((await handle.describe()).schedule, wanted):
        return "unchanged"

    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=wanted)

    await handle.update(update)
    return "updated"
