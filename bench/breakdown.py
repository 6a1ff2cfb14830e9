"""One transfer by phase, read from its workflow history: the times the server recorded for its events, and for
each local activity (which has no events of its own) the completion time the worker wrote into its marker.

    steps = await breakdown(client, workflow_id, sent_at, answered_at)   # wall-clock seconds of the POST
    for step in steps: print(step.label, step.ms)

The steps follow each other on one time line, from the POST leaving the client to its answer arriving: the API up
to the workflow's start; per workflow task its wait for the worker, each local activity it ran (from the previous
point to its completion) and the rest of the task (workflow code, the completion's round trip); per activity its
wait in the queue and its run (the HTTP call and its report). The client, the worker and the server share this
machine's clock, so their times compare. (A marker's `original_schedule_time` is not used: it is not the time the
local activity started; it can come after its `complete_time`.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

__all__ = ["Step", "breakdown", "by_kind"]


@dataclass
class Step:
    label: str
    kind: str  # api | task wait | local activity | task rest | activity queue | activity
    start_s: float
    end_s: float

    @property
    def ms(self) -> float:
        return (self.end_s - self.start_s) * 1000


def _at(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _local_activity(event: HistoryEvent) -> tuple[str, float] | None:
    """(activity type, completion time) from a local activity's marker."""
    data = event.marker_recorded_event_attributes.details.get("data")
    if data is None or not data.payloads:
        return None
    marker = json.loads(data.payloads[0].data)
    done = marker.get("complete_time") or {}
    return marker.get("activity_type", "?"), float(done.get("seconds", 0)) + done.get("nanos", 0) / 1e9


async def breakdown(client: Client, workflow_id: str, sent_at: float, answered_at: float) -> list[Step]:
    events = list((await client.get_workflow_handle(workflow_id).fetch_history()).events)
    kinds = [(event.WhichOneof("attributes") or "").removesuffix("_event_attributes") for event in events]
    steps: list[Step] = []
    task_scheduled = task_started = 0.0
    activities: dict[int, tuple[str, float]] = {}  # scheduled event id -> (type, started)
    scheduled: dict[int, tuple[str, float]] = {}
    for index, (kind, event) in enumerate(zip(kinds, events, strict=True)):
        at = _at(event)
        if kind == "workflow_execution_started":
            steps.append(Step("client: request to workflow started", "api", sent_at, at))
        elif kind == "workflow_task_scheduled":
            task_scheduled = at
        elif kind == "workflow_task_started":
            task_started = at
            steps.append(Step("workflow task: waits for the worker", "task wait", task_scheduled, at))
        elif kind == "workflow_task_completed":
            point = task_started
            for marker_kind, marker in zip(kinds[index + 1 :], events[index + 1 :], strict=True):
                if marker_kind == "workflow_task_scheduled" or marker_kind.startswith("activity_task"):
                    break  # the task's commands end here; its markers come right after its completion
                local = _local_activity(marker) if marker_kind == "marker_recorded" else None
                if local is not None:
                    steps.append(Step(f"{local[0]} (local activity)", "local activity", point, local[1]))
                    point = local[1]
            steps.append(Step("workflow task: code and completion", "task rest", point, at))
        elif kind == "activity_task_scheduled":
            scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
        elif kind == "activity_task_started":
            name, when = scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
            steps.append(Step(f"{name}: queued", "activity queue", when, at))
            activities[event.activity_task_started_event_attributes.scheduled_event_id] = (name, at)
        elif kind == "activity_task_completed":
            name, begun = activities[event.activity_task_completed_event_attributes.scheduled_event_id]
            steps.append(Step(f"{name} (activity: call and report)", "activity", begun, at))
        elif kind == "workflow_execution_update_completed":  # mojaflow's API answers with the update's result
            steps.append(Step("client: update completed to answer received", "api", at, answered_at))
        elif kind == "workflow_execution_completed" and "workflow_execution_update_completed" not in kinds:
            steps.append(Step("client: workflow completed to result received", "api", at, answered_at))
    return steps


PHASES = {"api": "client and API", "task wait": "workflow tasks' waits", "task rest": "workflow tasks' code"}


def by_kind(steps: list[Step]) -> dict[str, float]:
    """Milliseconds per phase of issue 12's breakdown: API, start (the first task's wait), each kind of local
    activity, the activities before the money step, the money step, the workflow tasks' own time."""
    totals: dict[str, float] = {}
    first_wait = True
    for step in steps:
        if step.kind == "task wait" and first_wait:
            key, first_wait = "start (first workflow task's wait)", False
        elif step.kind in ("local activity", "activity"):
            key = step.label
        elif step.kind == "activity queue":
            key = "activities queued"
        else:
            key = {"api": "client and API", "task wait": "workflow tasks' waits", "task rest": "workflow tasks' code"}[
                step.kind
            ]
        totals[key] = totals.get(key, 0.0) + step.ms
    return {key: round(ms, 1) for key, ms in totals.items()}
