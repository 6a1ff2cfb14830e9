"""Which transfer a log line is about: `transferId`, `workflowId` and `runId` on every line of a transfer's work.

- Workflows: `workflow.logger` (and any `workflow.LoggerAdapter`) puts the run's details in the record's
  `temporal_workflow` extra; any other line logged inside a workflow gets them from `workflow.info()`. The
  transferId is the workflow input's `transfer_id` (transfers and webhook deliveries have one), remembered by
  `TransferLogInterceptor` for the run's lifetime.
- Activities: `activity.info()` (or the `temporal_activity` extra of `activity.logger`); the transferId travels from
  the workflow to each of its activities, local ones too, in the `mojaflow-transfer-id` header (a UUID or ULID,
  never personal data: headers are not encrypted, and need not be).
- The APIs: `RequestLogContext` (an ASGI middleware) takes the transferId from the path (`/transfers/{id}`,
  `/send-money/{id}`, ...); a route that learns it otherwise (a new transfer) calls `bind_transfer_id`. Every line
  of that request, its access log line included, carries it.

`add_transfer_context` is the structlog processor that writes these fields (mojaflow/logs.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any
from weakref import WeakKeyDictionary

from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

__all__ = [
    "TRANSFER_ID_HEADER",
    "RequestLogContext",
    "TransferLogInterceptor",
    "add_transfer_context",
    "bind_transfer_id",
]

TRANSFER_ID_HEADER = "mojaflow-transfer-id"
_ID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9A-HJKMNP-TV-Z]{26}"
_ID_ONLY = re.compile(rf"^(?:{_ID})$")
_TRANSFER_PATH = re.compile(rf"^/(?:transfers|send-money|merchant-payment)/({_ID})(?:/|$)")

_activity_transfer_id: ContextVar[str | None] = ContextVar("mojaflow_activity_transfer_id", default=None)
_request_fields: ContextVar[dict[str, str] | None] = ContextVar("mojaflow_request_log_fields", default=None)
# By the run's own event loop (one per workflow run): freed with the run, when it ends or leaves the cache.
_workflow_transfer_ids: WeakKeyDictionary[asyncio.AbstractEventLoop, str] = WeakKeyDictionary()

_WORKFLOW_FIELDS = {"workflow_id": "workflowId", "run_id": "runId", "workflow_type": "workflowType",
                    "update_name": "updateName", "update_id": "updateId"}  # fmt: skip
_ACTIVITY_FIELDS = {"workflow_id": "workflowId", "workflow_run_id": "runId", "workflow_type": "workflowType",
                    "activity_type": "activityType", "attempt": "attempt"}  # fmt: skip


def _transfer_id(value: object) -> str | None:
    """A value's `transfer_id` when it looks like one (a model of ours), else None."""
    found = getattr(value, "transfer_id", None)
    return found if isinstance(found, str) and _ID_ONLY.match(found) else None


def _workflow_loop() -> asyncio.AbstractEventLoop | None:
    """The running workflow's event loop (each run has its own), or None outside a workflow."""
    if not workflow.in_workflow():
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- the worker -------------------------------------------------------------------------------------------


class TransferLogInterceptor(Interceptor):
    """Remembers a run's transferId and hands it to the run's activities (see the module's docstring)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowInbound


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        transfer_id = _transfer_id(input.args[0]) if input.args else None
        loop = _workflow_loop()
        if transfer_id is not None and loop is not None:
            _workflow_transfer_ids[loop] = transfer_id
        return await super().execute_workflow(input)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_transfer_id(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_transfer_id(input.headers)
        return super().start_local_activity(input)


def _with_transfer_id(headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    loop = _workflow_loop()
    transfer_id = _workflow_transfer_ids.get(loop) if loop is not None else None
    if transfer_id is None:
        return headers
    return {**headers, TRANSFER_ID_HEADER: PayloadConverter.default.to_payloads([transfer_id])[0]}


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        header = input.headers.get(TRANSFER_ID_HEADER)
        try:
            value = PayloadConverter.default.from_payloads([header])[0] if header is not None else None
        except Exception:  # a header of someone else's making: the activity runs all the same, without the field
            value = None
        # Not reset after: each activity runs in an asyncio task of its own, whose context ends with it, and
        # temporalio's own line on the activity's completion ("Completing activity as failed") still gets it.
        _activity_transfer_id.set(value if isinstance(value, str) and _ID_ONLY.match(value) else None)
        return await super().execute_activity(input)


# -- the APIs ---------------------------------------------------------------------------------------------


class RequestLogContext:
    """ASGI middleware (outermost): the fields of one request's lines, the transferId of its path to begin with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields: dict[str, str] = {}
        match = _TRANSFER_PATH.match(scope.get("path", ""))
        if match:
            fields["transferId"] = match.group(1)
        # One dict, shared by whatever task the request's code runs in (contexts are copied, the dict is not)
        token = _request_fields.set(fields)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_fields.reset(token)


def bind_transfer_id(transfer_id: str) -> None:
    """The rest of this request's lines (its access log line too) are about `transfer_id`. Outside a request
    (or for a value that is no transfer id) nothing happens."""
    fields = _request_fields.get()
    if fields is not None and _ID_ONLY.match(transfer_id):
        fields["transferId"] = transfer_id


# -- the processor ----------------------------------------------------------------------------------------


def _renamed(details: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {ours: details[theirs] for theirs, ours in names.items() if details.get(theirs) is not None}


def add_transfer_context(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: transferId, workflowId, runId (and the workflow's, activity's or update's type) of
    the line's work, where it has any. Also drops the copy of those details that Temporal's logger adapters
    append to the message: the fields hold them now."""
    record = event.get("_record")
    workflow_extra = getattr(record, "temporal_workflow", None)
    activity_extra = getattr(record, "temporal_activity", None)
    details: dict[str, Any] = {}
    for extra, names in ((workflow_extra, _WORKFLOW_FIELDS), (activity_extra, _ACTIVITY_FIELDS)):
        if isinstance(extra, Mapping):
            details.update(_renamed(extra, names))
            if isinstance(event.get("event"), str):
                event["event"] = event["event"].removesuffix(f" ({extra})")
    if not details and workflow.in_workflow():
        info = workflow.info()
        details.update(workflowId=info.workflow_id, runId=info.run_id, workflowType=info.workflow_type)
        update = workflow.current_update_info()
        if update is not None:
            details.update(updateName=update.name, updateId=update.id)
    elif not details and activity.in_activity():
        task = activity.info()
        details.update(workflowId=task.workflow_id, runId=task.workflow_run_id, workflowType=task.workflow_type,
                       activityType=task.activity_type, attempt=task.attempt)  # fmt: skip
    loop = _workflow_loop()
    transfer_id = (
        (_workflow_transfer_ids.get(loop) if loop is not None else None)
        or _activity_transfer_id.get()
        or (_request_fields.get() or {}).get("transferId")
    )
    if transfer_id is not None:
        details["transferId"] = transfer_id
    for key, value in details.items():
        event.setdefault(key, value)
    return event
