"""A dev server keeps the search attributes it had when it made its database: `make run` adds ours that it lacks at
every start (`register_search_attributes`), so a database from an earlier version still finds every workflow."""

from __future__ import annotations

import asyncio
import time
import uuid

from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from mojaflow.temporal import SEARCH_ATTRIBUTES, register_search_attributes


async def test_the_search_attributes_a_namespace_lacks_are_added_once(temporal: WorkflowEnvironment) -> None:
    namespace = f"older-{uuid.uuid4().hex[:8]}"  # a namespace of its own: none of ours registered
    await temporal.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    client = Client(temporal.client.service_client, namespace=namespace)

    deadline = time.monotonic() + 30
    while True:  # a new namespace answers once the server's namespace cache has it
        try:
            added = await register_search_attributes(client)
            break
        except RPCError:
            assert time.monotonic() < deadline, f"namespace {namespace} never answered"
            await asyncio.sleep(0.2)

    assert added == sorted(key.name for key in SEARCH_ATTRIBUTES)
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    assert {name: listed.custom_attributes[name] for name in added} == {
        key.name: key.indexed_value_type for key in SEARCH_ATTRIBUTES
    }
    assert await register_search_attributes(client) == []  # nothing left to add
