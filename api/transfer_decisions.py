"""Decisions on a transfer (accept or reject the party, the quote) as workflow updates, at most once per
idempotency key, whatever failed before; every one delivered or refused goes to the audit log.

The key is bound to its decision at once (another decision under it raises `IdempotencyKeyReused`, for ever), but
only the workflow says whether the decision was taken: the update's id is derived from the key, so Temporal
answers a re-sent update from the first one (also while it still waits for a worker), and the saved `decisions`
answer once the run is gone. A retry after a crash, a timeout or a lost answer delivers what never arrived, and
replays what did.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.commands import DecideTransfer, Outcome
from api.errors import HomeTransactionMismatch, InvalidState, TemporalUnavailable, TransferNotFound
from api.idempotency import (
    Idempotency,
    IdempotencyKey,
    decision_fingerprint,
    decision_route,
    decision_taken,
    decision_update_id,
)
from mojaflow.audit import decision_action, record_action_or_log
from mojaflow.database import Database
from mojaflow.models import REPORTABLE_STATES, DecisionInput, Direction, TransferState, TransferView, WaitRequest
from workflows.outbound_transfer import OutboundTransferWorkflow

__all__ = ["Decisions", "is_timeout"]


class Decisions:
    def __init__(self, client: Client, database: Database, idempotency: Idempotency) -> None:
        self._client = client
        self._db = database
        self._idempotency = idempotency

    async def decide(self, command: DecideTransfer, wait_s: float) -> Outcome:
        """`_decide`, and who did it into the audit log: each decision delivered or refused, not replays."""
        action = decision_action(accept_party=command.accept_party, accept_quote=command.accept_quote)
        entry = {"actor": command.requester.actor, "action": action, "client_key": command.requester.client_key}
        try:
            outcome = await self._decide(command, wait_s)
        except InvalidState as refused:
            detail = "409 invalid_state"
            await record_action_or_log(self._db, **entry, transfer_id=refused.view.transfer_id, detail=detail)
            raise
        if not outcome.replayed:
            detail = f"{200 if outcome.settled else 202} {outcome.view.current_state}"
            await record_action_or_log(self._db, **entry, transfer_id=outcome.view.transfer_id, detail=detail)
        return outcome

    async def _decide(self, command: DecideTransfer, wait_s: float) -> Outcome:
        started = time.monotonic()
        client_key = command.requester.client_key
        stored = await self._db.find_transfer(command.transfer_id)
        if stored is None or stored.view.direction != Direction.OUTBOUND or stored.client_key != client_key:
            raise TransferNotFound(command.transfer_id)
        view, workflow_id = stored.view, stored.workflow_id
        if command.home_transaction_id is not None and command.home_transaction_id != view.home_transaction_id:
            raise HomeTransactionMismatch("homeTransactionId is not the transfer's")
        accept_party, accept_quote = command.accept_party, command.accept_quote
        scope = IdempotencyKey(client_key, "PUT", decision_route(view.transfer_id), command.idempotency_key)
        claim = await self._idempotency.claim(scope, decision_fingerprint(accept_party, accept_quote), view.transfer_id)
        update_id = decision_update_id(client_key, command.idempotency_key)
        if not claim.created and decision_taken(view, update_id, accept_party, accept_quote):
            return Outcome(view, settled=True, replayed=True)
        if accept_party is not None:
            update, waiting = OutboundTransferWorkflow.accept_party, TransferState.WAITING_FOR_PARTY_ACCEPTANCE
        else:
            update, waiting = OutboundTransferWorkflow.accept_quote, TransferState.WAITING_FOR_QUOTE_ACCEPTANCE
        decision = DecisionInput(
            accept_party=accept_party, accept_quote=accept_quote, wait_s=wait_s, actor=command.requester.actor
        )
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            result = await asyncio.wait_for(
                handle.execute_update(update, decision, id=update_id, rpc_timeout=timedelta(seconds=wait_s + 5)),
                timeout=wait_s + 6,
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # no worker answered: may be delivered
            return Outcome(view, settled=False)
        except (WorkflowUpdateFailedError, RPCError) as error:
            if isinstance(error, RPCError) and is_timeout(error):
                return Outcome(view, settled=False)
            if isinstance(error, RPCError) and error.status != RPCStatusCode.NOT_FOUND:
                raise TemporalUnavailable() from None
            # Refused by the validator, or the run is over (finished, or continued as new): a run that does not
            # know this update id may still have taken the decision in an earlier run. Its saved view says.
            current = await self._db.find_transfer(view.transfer_id)
            view = current.view if current is not None else view
            if decision_taken(view, update_id, accept_party, accept_quote):
                return Outcome(view, settled=True, replayed=True)
            if isinstance(error, WorkflowUpdateFailedError):
                raise InvalidState(_reason(error, view), view) from None
            raise InvalidState(f"the transfer is {view.current_state}: nothing awaits a decision", view) from None
        if not claim.created:  # taken under this key, maybe long ago: Temporal answered from the first delivery
            remaining_s = max(0.0, wait_s - (time.monotonic() - started))
            shown = await self._once_shown(handle, view.transfer_id, waiting, remaining_s, update_id, command)
            return Outcome(shown or result, settled=shown is not None, replayed=True)
        moved_on = result.current_state in REPORTABLE_STATES and result.current_state != waiting
        return Outcome(result, settled=moved_on)

    async def _once_shown(
        self,
        handle: WorkflowHandle[Any, Any],
        transfer_id: str,
        waiting: TransferState,
        wait_s: float,
        update_id: str,
        command: DecideTransfer,
    ) -> TransferView | None:
        """The saved transfer once it shows the decision taken under `update_id` (saved with the state after
        `waiting`), waiting up to `wait_s` for that as a first request would; None if not in time."""
        decision = (command.accept_party, command.accept_quote)
        current = await self._db.find_transfer(transfer_id)
        if current is not None and decision_taken(current.view, update_id, *decision):
            return current.view
        if wait_s <= 0:
            return None
        try:
            return await asyncio.wait_for(
                handle.execute_update(
                    OutboundTransferWorkflow.wait_for_report,
                    WaitRequest(wait_s=wait_s, leaving=waiting),
                    rpc_timeout=timedelta(seconds=wait_s + 5),
                ),
                timeout=wait_s + 6,
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError, RPCError):
            current = await self._db.find_transfer(transfer_id)  # e.g. the run ended meanwhile: saved at its end
            return current.view if current is not None and decision_taken(current.view, update_id, *decision) else None


def _reason(error: WorkflowUpdateFailedError, view: TransferView) -> str:
    cause = error.cause
    message = getattr(cause, "message", None) or str(cause)
    return message or f"the transfer is {view.current_state}"


def is_timeout(error: RPCError) -> bool:
    """No worker answered in time (the request itself reached Temporal)."""
    return error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
