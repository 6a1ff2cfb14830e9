"""The "no workflow ended Failed" check is real on every kind of Temporal server the tests start: a workflow
made to fail on the time-skipping test server (which has no visibility queries) fails the server's exit, and a
workflow that completed is not listed."""

from __future__ import annotations

import uuid

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.temporal_env import time_skipping_temporal


@workflow.defn(name="DeliberatelyFailing")
class DeliberatelyFailing:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("made to fail", non_retryable=True)


@workflow.defn(name="DeliberatelyFine")
class DeliberatelyFine:
    @workflow.run
    async def run(self) -> None:
        return None


async def test_a_failed_workflow_on_the_time_skipping_server_fails_its_exit(payload_key: bytes) -> None:
    failing_id, fine_id = f"failing-{uuid.uuid4()}", f"fine-{uuid.uuid4()}"
    expected = f"\\['DeliberatelyFailing {failing_id}: WORKFLOW_EXECUTION_STATUS_FAILED'\\]"

    with pytest.raises(AssertionError, match=expected):  # the fine one is not listed
        async with time_skipping_temporal(payload_key) as env:
            queue = f"check-{uuid.uuid4()}"
            runner = UnsandboxedWorkflowRunner()
            async with Worker(
                env.client, task_queue=queue, workflows=[DeliberatelyFailing, DeliberatelyFine], workflow_runner=runner
            ):
                await env.client.execute_workflow(DeliberatelyFine.run, id=fine_id, task_queue=queue)
                with pytest.raises(WorkflowFailureError) as failed:
                    await env.client.execute_workflow(DeliberatelyFailing.run, id=failing_id, task_queue=queue)
                assert isinstance(failed.value.cause, ApplicationError)
