"""`GET /health`: ok only when Temporal answers and a worker polls our task queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

__all__ = ["HealthCheck"]

# A worker re-issues its long poll at least every 70 s; older than that, it is gone.
_POLLER_FRESHNESS = timedelta(seconds=70)


class HealthCheck:
    def __init__(self, client: Client, namespace: str, task_queue: str) -> None:
        self._client = client
        self._namespace = namespace
        self._task_queue = task_queue

    async def problem(self) -> str | None:
        """None when healthy, else the reason."""
        request = DescribeTaskQueueRequest(
            namespace=self._namespace,
            task_queue=TaskQueue(name=self._task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        try:
            response = await self._client.workflow_service.describe_task_queue(request, timeout=timedelta(seconds=3))
        except RPCError as error:
            return f"Temporal did not answer: {error.status.name}"
        except Exception as error:  # connection refused before the first connect
            return f"Temporal did not answer: {type(error).__name__}"
        now = datetime.now(UTC)
        fresh = [
            poller
            for poller in response.pollers
            if now - poller.last_access_time.ToDatetime(tzinfo=UTC) < _POLLER_FRESHNESS
        ]
        if not fresh:
            return f"no worker polls task queue {self._task_queue}"
        return None
