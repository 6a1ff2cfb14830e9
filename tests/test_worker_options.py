"""The transfers' worker's slots, sticky cache and pollers: `MOJAFLOW_WORKER_*` reach the Temporal `Worker`, the
defaults are what the worker ran with before they were settings, and every value the settings accept, Temporal
accepts too."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid

import httpx
import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.payment_manager import PaymentManagerActivities
from mojaflow.settings import Settings
from tests.support.workers import settings_of
from worker import build_worker, transfer_worker_options

OPTIONS_ENV = {
    "MOJAFLOW_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "7",
    "MOJAFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES": "11",
    "MOJAFLOW_WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES": "13",
    "MOJAFLOW_WORKER_MAX_CACHED_WORKFLOWS": "17",
    "MOJAFLOW_WORKER_WORKFLOW_TASK_POLLERS": "3",
    "MOJAFLOW_WORKER_ACTIVITY_TASK_POLLERS": "4",
}


def test_the_defaults_are_temporalios_but_200_activity_slots() -> None:
    defaults = inspect.signature(Worker.__init__).parameters
    options = transfer_worker_options(settings_of({}))
    assert options == {
        "max_concurrent_workflow_tasks": 100,  # temporalio's fixed tuner: 100 slots of each kind unless given
        "max_concurrent_activities": 200,  # worker.py's since the first bench
        "max_concurrent_local_activities": 100,
        "max_cached_workflows": defaults["max_cached_workflows"].default,
        "workflow_task_poller_behavior": defaults["workflow_task_poller_behavior"].default,
        "activity_task_poller_behavior": defaults["activity_task_poller_behavior"].default,
    }
    assert options["max_cached_workflows"] == 1000
    assert options["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=5)


def test_the_environment_reaches_the_worker_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPTIONS_ENV.items():
        monkeypatch.setenv(name, value)
    options = transfer_worker_options(Settings(_env_file=None))  # type: ignore[call-arg]
    assert options == {
        "max_concurrent_workflow_tasks": 7,
        "max_concurrent_activities": 11,
        "max_concurrent_local_activities": 13,
        "max_cached_workflows": 17,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(maximum=3),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(maximum=4),
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MOJAFLOW_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "1"),
        ("MOJAFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES", "0"),
        ("MOJAFLOW_WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES", "0"),
        ("MOJAFLOW_WORKER_MAX_CACHED_WORKFLOWS", "-1"),
        ("MOJAFLOW_WORKER_WORKFLOW_TASK_POLLERS", "1"),
        ("MOJAFLOW_WORKER_ACTIVITY_TASK_POLLERS", "0"),
        ("MOJAFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES", "20000"),
    ],
)
def test_a_value_out_of_range_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_of({name: value})
    assert name.removeprefix("MOJAFLOW_").lower() in str(refused.value)


async def test_the_smallest_values_accepted_run_a_worker(temporal: WorkflowEnvironment) -> None:
    """Temporal's own floors (two workflow-task slots and pollers while the cache is on) are the settings' floors:
    a worker built with them starts polling. Its config holds what the environment said."""
    smallest = {
        "MOJAFLOW_TASK_QUEUE": f"worker-options-{uuid.uuid4()}",
        "MOJAFLOW_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "2",
        "MOJAFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES": "1",
        "MOJAFLOW_WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES": "1",
        "MOJAFLOW_WORKER_MAX_CACHED_WORKFLOWS": "1",
        "MOJAFLOW_WORKER_WORKFLOW_TASK_POLLERS": "2",
        "MOJAFLOW_WORKER_ACTIVITY_TASK_POLLERS": "1",
    }
    async with httpx.AsyncClient() as sdk:  # never called: no workflow runs on this queue
        worker = build_worker(temporal.client, settings_of(smallest), [PaymentManagerActivities(sdk)])
        async with worker:
            await _until_polled(temporal.client, worker.task_queue)
            config = worker.config()
    assert config["max_concurrent_workflow_tasks"] == 2
    assert config["max_concurrent_activities"] == 1
    assert config["max_concurrent_local_activities"] == 1
    assert config["max_cached_workflows"] == 1
    assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=2)
    assert config["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(maximum=1)


async def _until_polled(client: Client, task_queue: str, timeout_s: float = 30) -> None:
    """Until the server has seen a poll for workflow tasks on `task_queue`."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + timeout_s
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        assert time.monotonic() < deadline, f"no worker polled {task_queue} within {timeout_s} s"
        await asyncio.sleep(0.1)
