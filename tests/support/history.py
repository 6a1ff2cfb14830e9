"""What a workflow's history says about its activities: when each was scheduled, started and closed, and what
it returned. Times are the server's (virtual under time-skipping), so tests can compare them with the times the
workflow recorded itself.

    runs = await activity_runs(client, workflow_id, "get_switch_state", SwitchState)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

__all__ = ["ActivityRun", "activity_runs", "history_length", "run_ids"]

T = TypeVar("T")


@dataclass
class ActivityRun:
    """One activity of one workflow run, as its history tells it (`result` None unless it completed)."""

    run_id: str
    scheduled_at: datetime
    started_at: datetime | None = None
    closed_at: datetime | None = None
    closed_as: str | None = None  # COMPLETED, FAILED, TIMED_OUT, CANCELED
    result: Any = None


async def run_ids(client: Client, workflow_id: str) -> list[str]:
    """Every run of `workflow_id` (continue-as-new makes several), oldest first."""
    runs = [(w.start_time, w.run_id) async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    return [run_id for _, run_id in sorted(runs)]


async def history_length(client: Client, workflow_id: str, run_id: str | None = None) -> int:
    """How many events one run's history holds so far."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return len(history.events)


_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("COMPLETED", "activity_task_completed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("FAILED", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("TIMED_OUT", "activity_task_timed_out_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("CANCELED", "activity_task_canceled_event_attributes"),
}


async def activity_runs(
    client: Client,
    workflow_id: str,
    activity_type: str,
    result_type: type[T] | None = None,
    *,
    run_id: str | None = None,
) -> list[ActivityRun]:
    """The (non-local) activities of type `activity_type` in one run (the latest if `run_id` is None), in order;
    completed results decoded with the client's data converter as `result_type`."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    history = await handle.fetch_history()
    by_scheduled_id: dict[int, ActivityRun] = {}
    for event in history.events:
        time = event.event_time.ToDatetime(tzinfo=UTC)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == activity_type:
                by_scheduled_id[event.event_id] = ActivityRun(run_id=history.run_id, scheduled_at=time)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = by_scheduled_id.get(event.activity_task_started_event_attributes.scheduled_event_id)
            if started is not None:
                started.started_at = time
        elif event.event_type in _CLOSED:
            closed_as, field = _CLOSED[event.event_type]
            attributes = getattr(event, field)
            closed = by_scheduled_id.get(attributes.scheduled_event_id)
            if closed is None:
                continue
            closed.closed_at, closed.closed_as = time, closed_as
            if closed_as == "COMPLETED" and result_type is not None:
                payloads = attributes.result.payloads
                (closed.result,) = await client.data_converter.decode(payloads, [result_type])
    return list(by_scheduled_id.values())
