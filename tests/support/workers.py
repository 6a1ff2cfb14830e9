"""In-process workers for tests that need a worker the stack's process cannot be: one that falls behind.

    async with backlogged_worker(client, settings):
        ...  # workflows run, local activities (CBS calls, saves) too, but no activity task is ever started

A backlogged worker is our own worker (same workflows, same activities, same task queue) with
`no_remote_activities=True`: it is what a worker whose activity slots are all taken looks like from the
server, a scheduled activity that nobody starts. Hand-offs are polled (`wait_for_pending_activity`), not timed.

Under the time-skipping test server, a worker that hands a workflow over to another must keep no workflow cache
(`max_cached_workflows=0`): that server never moves a workflow off a stopped worker's sticky queue, so the next
task (an update, an activity's result) would wait there for ever. The dev server does (tests/workflows/
test_outbound_backlog_crash.py hands over between processes with their caches on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client
from temporalio.worker import Worker

from activities.webhooks import WebhookActivities
from mojaflow.log_context import TransferLogInterceptor
from mojaflow.settings import Settings
from worker import TRANSFER_WORKFLOWS, transfer_worker_options, worker_resources, workflow_runner

__all__ = ["backlogged_worker", "our_worker", "settings_of", "wait_for_pending_activity"]


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a worker process started with `env` (the stack's `MOJAFLOW_*` variables) would read: these
    only, not this process's environment or `.env`."""
    return Settings.model_validate({name.removeprefix("MOJAFLOW_").lower(): value for name, value in env.items()})


def our_worker(client: Client, settings: Settings, activity_objects: list[object], **options: Any) -> Worker:
    """The transfers' worker as `worker.build_worker` makes it (keep the two alike), with Temporal `Worker`
    options on top. (A `Worker` registers itself with the client when built, so build_worker's cannot be copied.)"""
    transfer_activities = [o for o in activity_objects if not isinstance(o, WebhookActivities)]
    config: dict[str, Any] = {
        "task_queue": settings.task_queue,
        "workflows": TRANSFER_WORKFLOWS,
        "activities": [
            getattr(instance, name)
            for instance in transfer_activities
            for name in dir(type(instance))
            if hasattr(getattr(type(instance), name), "__temporal_activity_definition")
        ],
        "workflow_runner": workflow_runner(sandboxed=settings.workflow_sandbox),
        "interceptors": [TransferLogInterceptor()],
        **transfer_worker_options(settings),
    }
    return Worker(client, **{**config, **options})


@asynccontextmanager
async def backlogged_worker(client: Client, settings: Settings, **options: Any) -> AsyncIterator[None]:
    """Our worker on `settings.task_queue` that runs workflow tasks and local activities only."""
    async with (
        worker_resources(settings) as objects,
        our_worker(client, settings, objects, no_remote_activities=True, **options),
    ):
        yield


async def wait_for_pending_activity(
    client: Client,
    workflow_id: str,
    activity_type: str,
    state: PendingActivityState.ValueType | None = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED,
    timeout_s: float = 30,
) -> PendingActivityInfo:
    """Poll the workflow's description until `activity_type` is pending in `state` (None: in any state); fail
    with what was seen."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        description = await client.get_workflow_handle(workflow_id).describe()
        pending = description.raw_description.pending_activities
        seen = [f"{p.activity_type.name} {PendingActivityState.Name(p.state)}" for p in pending]
        for activity in pending:
            if activity.activity_type.name == activity_type and state in (None, activity.state):
                return activity
        await asyncio.sleep(0.1)
    wanted = "any state" if state is None else PendingActivityState.Name(state)
    raise AssertionError(f"{activity_type} never pending in {wanted}; seen {seen}")
