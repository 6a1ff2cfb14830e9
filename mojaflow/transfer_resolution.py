"""An operator settles a transfer after checking with the hub: the one path the CLI (`mojaflow transfers
resolve`) and the API (`POST /transfers/{id}/resolve`) share.

* RECONCILING / SETTLING: the transfer's own workflow takes it, by its `resolve` update (its validator decides;
  mojaflow/resolution.py says which outcome each state allows). The workflow asks the switch once more, then
  commits or releases the hold, once, and saves its final state (with its event) as always.
* A final transfer that needs a person (`settlement_failed`, `release_failed`): `ResolutionWorkflow`, id
  `resolve-{transferId}`, one run at a time: a second while one runs is refused; after one ended, a new run reads
  the transfer again and refuses it if resolved (so a resolution the CBS refused can be tried again).

Either way the audit trail gets one entry (the operator's key id as actor, the outcome, the reason) once the
workflow took the resolution; the transfer's `resolution` keeps the same facts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from mojaflow.audit import record_action_or_log
from mojaflow.database import Database, StoredTransfer
from mojaflow.models import FINAL_STATES, TransferState, TransferView
from mojaflow.resolution import (
    RUNNING_STATES,
    ResolutionRequest,
    ResolutionResult,
    ResolveInput,
    refusal,
    resolution_workflow_id,
)

__all__ = ["ResolutionRefused", "Resolved", "TransferToResolveNotFound", "resolve_transfer"]

_ATTEMPTS = 3  # of the update, when the run it reached had just continued as new


class ResolutionRefused(Exception):
    """The transfer cannot be resolved as asked; the message says why (states, codes, key ids: no personal data)."""


class TransferToResolveNotFound(ResolutionRefused):
    """No transfer has this id (ours or the SDK's)."""


@dataclass(frozen=True)
class Resolved:
    """The resolution was taken. `view`: the transfer as saved when we stopped waiting (RECONCILING still, if its
    workflow had not settled it within the wait; SETTLING while the CBS is down)."""

    path: Literal["update", "workflow"]
    view: TransferView
    workflow_id: str


async def resolve_transfer(
    database: Database,
    client: Client,
    task_queue: str,
    transfer_id: str,
    request: ResolveInput,
    *,
    wait_s: float = 30.0,
) -> Resolved:
    """Resolve the transfer as `request` says. Raises `TransferToResolveNotFound`, `ResolutionRefused`."""
    stored = await database.find_transfer(transfer_id)
    if stored is None:
        raise TransferToResolveNotFound(f"no transfer {transfer_id}")
    problem = refusal(stored.view, request.outcome)
    if problem is not None:
        raise ResolutionRefused(problem)
    if stored.view.current_state in RUNNING_STATES:
        return await _resolve_running(database, client, stored, request, wait_s)
    return await _resolve_final(database, client, task_queue, stored, request)


async def _resolve_running(
    database: Database, client: Client, stored: StoredTransfer, request: ResolveInput, wait_s: float
) -> Resolved:
    view = stored.view
    handle = client.get_workflow_handle(stored.workflow_id)  # its latest run
    for attempt in range(_ATTEMPTS):
        try:
            await handle.execute_update(
                "resolve", request, id=f"resolve-{uuid.uuid4()}", result_type=TransferView,
                rpc_timeout=timedelta(seconds=30),
            )  # fmt: skip
            break
        except WorkflowUpdateFailedError as error:  # the validator's refusal
            cause = error.cause
            raise ResolutionRefused(cause.message if isinstance(cause, ApplicationError) else str(cause)) from None
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            # The run ended under the update: a reconciliation that continued as new (ask its next run), or the
            # transfer's end (then it is no longer RECONCILING or SETTLING).
            current = await database.find_transfer(view.transfer_id)
            if attempt == _ATTEMPTS - 1 or current is None or current.view.current_state != view.current_state:
                raise ResolutionRefused("its workflow is no longer running: show the transfer again") from None
            await asyncio.sleep(0.5)
    await _audit(database, stored, request, f"{view.current_state.value} -> resolved")
    settled = await _settled(database, view.transfer_id, view.current_state, wait_s)
    return Resolved("update", settled, stored.workflow_id)


async def _resolve_final(
    database: Database, client: Client, task_queue: str, stored: StoredTransfer, request: ResolveInput
) -> Resolved:
    view = stored.view
    workflow_id = resolution_workflow_id(view.transfer_id)
    try:
        handle = await client.start_workflow(
            "ResolutionWorkflow",
            ResolutionRequest(transfer_id=view.transfer_id, **request.model_dump()),
            id=workflow_id,
            task_queue=task_queue,
            result_type=ResolutionResult,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        raise ResolutionRefused(f"a resolution of this transfer is in progress: workflow {workflow_id}") from None
    result: ResolutionResult = await handle.result()
    code = view.last_error.code if view.last_error else "-"
    if result.status == "refused":  # the transfer changed between our read and the workflow's
        raise ResolutionRefused(result.detail or "refused")
    if result.status == "cbs_refused":
        await _audit(database, stored, request, f"{code}: the CBS refused ({result.detail}), unchanged")
        raise ResolutionRefused(
            f"the CBS refused to {'commit' if request.outcome == 'COMMITTED' else 'release'} hold {result.hold_id} "
            f"({result.detail}): the transfer is unchanged; settle it at the CBS by hand"
        )
    await _audit(database, stored, request, f"{view.current_state.value} {code} -> {result.state}")
    settled = await database.find_transfer(view.transfer_id)
    return Resolved("workflow", settled.view if settled else view, workflow_id)


async def _audit(database: Database, stored: StoredTransfer, request: ResolveInput, what: str) -> None:
    await record_action_or_log(
        database, actor=request.actor, action=f"resolve_{request.outcome.lower()}", client_key=stored.client_key,
        transfer_id=stored.view.transfer_id, detail=f"{what}; reason: {request.reason}",
    )  # fmt: skip


async def _settled(database: Database, transfer_id: str, state: TransferState, wait_s: float) -> TransferView:
    """The saved transfer once it left `state` for a final one (or SETTLING), or as it stands after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        stored = await database.find_transfer(transfer_id)
        assert stored is not None
        current = stored.view.current_state
        if current in FINAL_STATES or (current == TransferState.SETTLING and current != state):
            return stored.view
        if state == TransferState.SETTLING or time.monotonic() >= deadline:
            return stored.view
        await asyncio.sleep(0.2)
