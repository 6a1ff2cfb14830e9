"""The sweeper's Temporal Schedule, as worker processes make it at start: its spec, one Schedule when two workers
start together (one creates it, the other finds it as wanted and leaves it), updated when the settings change."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Schedule, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from tests.conftest import ROOT, Stack
from tests.support.process import ServerProcess
from tests.workflows.test_sweeper import our_records


def schedule_lines(log_path: Path) -> list[str]:
    if not log_path.exists():
        return []
    return [r["event"] for r in our_records(log_path) if r["event"].startswith("sweeper schedule ")]


def worker(stack: Stack, log_path: Path, **env: str) -> ServerProcess:
    """A worker process of this stack with `env` on top, up once it logged what it did with the Schedule."""
    return ServerProcess(
        "worker",
        [sys.executable, "worker.py"],
        health_url=f"{stack.api_url}/health",
        ready=lambda: bool(schedule_lines(log_path)),
        env={**stack.env, **env},
        cwd=str(ROOT),
        log_path=log_path,
    )


def assert_spec(schedule: Schedule, every_s: float, task_queue: str) -> None:
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "SweeperWorkflow"
    assert action.task_queue == task_queue
    assert [interval.every for interval in schedule.spec.intervals] == [timedelta(seconds=every_s)]
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert action.execution_timeout is not None and action.execution_timeout >= timedelta(seconds=every_s)


async def test_the_stack_worker_made_its_schedule_at_start(stack: Stack) -> None:
    description = await stack.client.get_schedule_handle(stack.env["MOJAFLOW_SWEEPER_SCHEDULE_ID"]).describe()
    assert_spec(description.schedule, 300, stack.env["MOJAFLOW_TASK_QUEUE"])  # the default interval
    assert not description.schedule.state.paused


async def test_two_workers_starting_together_leave_one_schedule_then_a_new_interval_updates_it(
    stack: Stack, tmp_path: Path
) -> None:
    schedule_id = f"tests-sweeper-{uuid.uuid4()}"
    own = {
        "MOJAFLOW_SWEEPER_SCHEDULE_ID": schedule_id,
        "MOJAFLOW_TASK_QUEUE": f"tests-{uuid.uuid4()}",  # no transfer of the stack's goes to these workers
        "MOJAFLOW_SWEEPER_INTERVAL_S": "3600",
    }
    first, second = worker(stack, tmp_path / "w1.log", **own), worker(stack, tmp_path / "w2.log", **own)
    handle = stack.client.get_schedule_handle(schedule_id)
    try:
        await asyncio.gather(asyncio.to_thread(first.start), asyncio.to_thread(second.start))
        outcomes = sorted(line.split()[3] for p in (first, second) for line in schedule_lines(p.log_path))
        assert outcomes == ["created", "unchanged"]
        description = await handle.describe()
        assert_spec(description.schedule, 3600, own["MOJAFLOW_TASK_QUEUE"])
        assert description.info.last_updated_at is None  # the second worker did not rewrite it
        assert first.running and second.running

        first.stop()
        restarted = worker(stack, tmp_path / "w3.log", **{**own, "MOJAFLOW_SWEEPER_INTERVAL_S": "1800"}).start()
        try:
            assert [line.split()[3] for line in schedule_lines(restarted.log_path)] == ["updated"]
            description = await handle.describe()
            assert_spec(description.schedule, 1800, own["MOJAFLOW_TASK_QUEUE"])
            assert description.info.last_updated_at is not None
        finally:
            restarted.stop()
    finally:
        first.stop()
        second.stop()
        await handle.delete()
