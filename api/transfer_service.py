"""What the client API does with transfers: idempotent starts, decisions as workflow updates, reads from our
database. Owns the Temporal client and the database; routes stay a few lines each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Caller
from api.headers import MoneyMovementHeaders
from api.idempotency import decision_fingerprint, decision_taken, decision_update_id, key_reused, request_hash
from api.problems import Problem
from mojaflow.audit import decision_action, record_action_or_log
from mojaflow.database import Database
from mojaflow.models import (
    REPORTABLE_STATES,
    AcceptanceDecision,
    DecisionInput,
    Direction,
    OutboundTransferInput,
    TransferPolicy,
    TransferRecord,
    TransferRequest,
    TransferState,
    TransferView,
    WaitRequest,
)
from mojaflow.settings import Settings
from mojaflow.temporal import (
    CLIENT_KEY,
    DIRECTION,
    HOME_TRANSACTION_ID,
    MOJAFLOW_STATE,
    outbound_workflow_id,
    retrieve_start_outcome,
)
from mojaflow.webhook_outbox import Outbox
from workflows.outbound_transfer import OutboundTransferWorkflow

__all__ = ["Outcome", "TransferService"]

ROUTE = "/transfers"


class Outcome:
    """A transfer resource and how to answer with it."""

    def __init__(self, view: TransferView, *, status: int, replayed: bool = False) -> None:
        self.view = view
        self.status = status
        self.replayed = replayed


def _not_found(transfer_id: str) -> Problem:
    return Problem(404, "transfer_not_found", "Transfer not found", f"no transfer with id {transfer_id}")


def _temporal_unavailable() -> Problem:
    return Problem(503, "temporal_unavailable", "Temporal unavailable", "the workflow service did not answer; retry")


class TransferService:
    def __init__(self, client: Client, database: Database, settings: Settings) -> None:
        self._client = client
        self._db = database
        self._settings = settings
        self._outbox = Outbox(database, client, settings)  # RECEIVED's webhook event, written with it

    async def create(self, headers: MoneyMovementHeaders, request: TransferRequest, wait_s: float) -> Outcome:
        """Start the transfer once per idempotency key; a replay answers the same transfer, never a second."""
        body_hash = request_hash(request.model_dump(mode="json", by_alias=True, exclude_none=True))
        claim = await self._db.claim_idempotency_key(
            client_key=headers.client_key,
            method="POST",
            route=ROUTE,
            key=headers.idempotent_request_key,
            request_hash=body_hash,
            transfer_id=str(uuid.uuid4()),
        )
        if not claim.created and claim.request_hash != body_hash:
            raise key_reused()
        transfer = self._workflow_input(claim.transfer_id, headers, request)
        workflow_id = outbound_workflow_id(headers.client_key, headers.idempotent_request_key)
        initial = TransferRecord(
            view=transfer.initial_view(),
            revision=0,
            workflow_id=workflow_id,
            client_key=headers.client_key,
            product=headers.product,
            payment_channel=headers.payment_channel,
        )
        if claim.created:
            await self._outbox.save(initial)
            view = await self._start(workflow_id, transfer, wait_s)
            status = 201 if view.current_state in REPORTABLE_STATES else 202
            return Outcome(view, status=status)
        saved = await self._db.get_transfer(claim.transfer_id)
        if saved is None or saved.current_state == TransferState.RECEIVED:
            # The first attempt may have died before it saved or started the transfer: finish its job.
            await self._outbox.save(initial)  # a no-op if it was saved (same revision); starts unstarted deliveries
            await self._start(workflow_id, transfer, 0)
        current = await self._db.get_transfer(claim.transfer_id)
        assert current is not None  # saved above if it was not already
        return Outcome(current, status=200, replayed=True)

    async def decide(
        self, caller: Caller, headers: MoneyMovementHeaders, transfer_id: str, decision: AcceptanceDecision,
        wait_s: float,
    ) -> Outcome:  # fmt: skip
        """`_decide`, and who did it into the audit log: each decision delivered or refused (409), not replays."""
        action = decision_action(accept_party=decision.accept_party, accept_quote=decision.accept_quote)
        entry = {"actor": caller.actor, "action": action, "client_key": headers.client_key}
        try:
            outcome = await self._decide(headers, transfer_id, decision, wait_s, caller.actor)
        except Problem as problem:
            if problem.status == 409:
                stored = await self._db.find_transfer(transfer_id)
                ours = stored.view.transfer_id if stored else transfer_id
                await record_action_or_log(self._db, **entry, transfer_id=ours, detail=f"409 {problem.code}")
            raise
        if not outcome.replayed:
            detail = f"{outcome.status} {outcome.view.current_state}"
            await record_action_or_log(self._db, **entry, transfer_id=outcome.view.transfer_id, detail=detail)
        return outcome

    async def _decide(
        self, headers: MoneyMovementHeaders, transfer_id: str, decision: AcceptanceDecision, wait_s: float, actor: str
    ) -> Outcome:
        """Deliver the CBS's acceptance to the workflow, at most once per idempotency key, whatever failed before.

        The key is bound to its body at once (another body under it is 422, for ever), but only the workflow says
        whether the decision was taken: the update's id is derived from the key, so Temporal answers a re-sent
        update from the first one (also while it still waits for a worker), and the saved `decisions` answer once
        the run is gone. A retry after a crash, a timeout or a lost answer delivers what never arrived, and
        replays what did.
        """
        started = time.monotonic()
        stored = await self._db.find_transfer(transfer_id)
        if stored is None or stored.view.direction != Direction.OUTBOUND or stored.client_key != headers.client_key:
            raise _not_found(transfer_id)
        view, workflow_id = stored.view, stored.workflow_id
        body_hash = decision_fingerprint(decision)
        claim = await self._db.claim_idempotency_key(
            client_key=headers.client_key,
            method="PUT",
            route=f"{ROUTE}/{view.transfer_id}",
            key=headers.idempotent_request_key,
            request_hash=body_hash,
            transfer_id=view.transfer_id,
        )
        if not claim.created and claim.request_hash != body_hash:
            raise key_reused()
        update_id = decision_update_id(headers.client_key, headers.idempotent_request_key)
        if not claim.created and decision_taken(view, update_id, decision):
            return Outcome(view, status=200, replayed=True)
        if decision.accept_party is not None:
            update, waiting = OutboundTransferWorkflow.accept_party, TransferState.WAITING_FOR_PARTY_ACCEPTANCE
        else:
            update, waiting = OutboundTransferWorkflow.accept_quote, TransferState.WAITING_FOR_QUOTE_ACCEPTANCE
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            result = await asyncio.wait_for(
                handle.execute_update(
                    update,
                    DecisionInput(**decision.model_dump(exclude={"wait_s"}), wait_s=wait_s, actor=actor),
                    id=update_id,
                    rpc_timeout=timedelta(seconds=wait_s + 5),
                ),
                timeout=wait_s + 6,
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # no worker answered: may be delivered
            return Outcome(view, status=202)
        except (WorkflowUpdateFailedError, RPCError) as error:
            if isinstance(error, RPCError) and _is_timeout(error):
                return Outcome(view, status=202)
            if isinstance(error, RPCError) and error.status != RPCStatusCode.NOT_FOUND:
                raise _temporal_unavailable() from None
            # Refused by the validator, or the run is over (finished, or continued as new): a run that does not
            # know this update id may still have taken the decision in an earlier run. Its saved view says.
            current = await self._db.find_transfer(view.transfer_id)
            view = current.view if current is not None else view
            if decision_taken(view, update_id, decision):
                return Outcome(view, status=200, replayed=True)
            if isinstance(error, WorkflowUpdateFailedError):
                raise Problem(409, "invalid_state", "Transfer not in that state", _reason(error, view)) from None
            detail = f"the transfer is {view.current_state}: nothing awaits a decision"
            raise Problem(409, "invalid_state", "Transfer not in that state", detail) from None
        if not claim.created:  # taken under this key, maybe long ago: Temporal answered from the first delivery
            remaining_s = max(0.0, wait_s - (time.monotonic() - started))
            shown = await self._once_shown(handle, view.transfer_id, waiting, remaining_s, update_id, decision)
            return Outcome(shown, status=200, replayed=True) if shown else Outcome(result, status=202, replayed=True)
        moved_on = result.current_state in REPORTABLE_STATES and result.current_state != waiting
        return Outcome(result, status=200 if moved_on else 202)

    async def _once_shown(
        self,
        handle: WorkflowHandle[Any, Any],
        transfer_id: str,
        waiting: TransferState,
        wait_s: float,
        update_id: str,
        decision: AcceptanceDecision,
    ) -> TransferView | None:
        """The saved transfer once it shows the decision taken under `update_id` (saved with the state after
        `waiting`), waiting up to `wait_s` for that as a first request would; None if not in time."""
        current = await self._db.find_transfer(transfer_id)
        if current is not None and decision_taken(current.view, update_id, decision):
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
            return current.view if current is not None and decision_taken(current.view, update_id, decision) else None

    async def get(self, caller: Caller, transfer_id: str) -> TransferView:
        """Another client's transfer is not found, as an unknown one: no existence oracle."""
        stored = await self._db.find_transfer(transfer_id)
        if stored is None or not caller.may_read(stored.client_key):
            raise _not_found(transfer_id)
        return stored.view

    async def list(
        self,
        caller: Caller,
        *,
        direction: Direction | None,
        state: TransferState | None,
        home_transaction_id: str | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[tuple[TransferView, datetime]]:
        rows = await self._db.list_transfers(
            direction=direction.value if direction else None,
            state=state.value if state else None,
            home_transaction_id=home_transaction_id,
            client_key=caller.read_scope,
            limit=limit,
            after=after,
        )
        return list(rows)

    def _workflow_input(
        self, transfer_id: str, headers: MoneyMovementHeaders, request: TransferRequest
    ) -> OutboundTransferInput:
        settings = self._settings
        policy = TransferPolicy(
            auto_accept_party=_auto_accept(settings.auto_accept_party, request.auto_accept_party, settings),
            auto_accept_quote=_auto_accept(settings.auto_accept_quote, request.auto_accept_quote, settings),
            max_fee=_max_fee(settings, request),
            acceptance_timeout_s=settings.acceptance_timeout_s,
            transfer_expiry_s=settings.transfer_expiry_s,
            reconcile_grace_s=settings.reconcile_grace_s,
            reconcile_max_interval_s=settings.reconcile_max_interval_s,
            reconcile_checks_per_run=settings.reconcile_checks_per_run,
            require_fulfilment=settings.reconcile_require_fulfilment,
        )
        return OutboundTransferInput(
            transfer_id=transfer_id,
            client_key=headers.client_key,
            product=headers.product,
            payment_channel=headers.payment_channel,
            request=request,
            policy=policy,
            received_at=datetime.now(UTC),
        )

    async def _start(self, workflow_id: str, transfer: OutboundTransferInput, wait_s: float) -> TransferView:
        """Start (or find) the run; with a wait, start and wait in one round trip (update-with-start)."""
        options: dict[str, Any] = {
            "id": workflow_id,
            "task_queue": self._settings.task_queue,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "search_attributes": TypedSearchAttributes(
                [
                    SearchAttributePair(MOJAFLOW_STATE, TransferState.RECEIVED.value),
                    SearchAttributePair(HOME_TRANSACTION_ID, transfer.request.home_transaction_id),
                    SearchAttributePair(CLIENT_KEY, transfer.client_key),
                    SearchAttributePair(DIRECTION, Direction.OUTBOUND.value),
                ]
            ),
        }
        try:
            if wait_s <= 0:
                await self._client.start_workflow(OutboundTransferWorkflow.run, transfer, **options)
                return transfer.initial_view()
            start = WithStartWorkflowOperation(OutboundTransferWorkflow.run, transfer, **options)
            try:
                return await asyncio.wait_for(
                    self._client.execute_update_with_start_workflow(
                        OutboundTransferWorkflow.wait_for_report, WaitRequest(wait_s=wait_s),
                        start_workflow_operation=start, rpc_timeout=timedelta(seconds=wait_s + 1),
                    ),
                    timeout=wait_s + 2,
                )  # fmt: skip
            except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # no worker in time: started, 202
                saved = await self._db.get_transfer(transfer.transfer_id)
                return saved or transfer.initial_view()
            finally:
                retrieve_start_outcome(start)
        except WorkflowAlreadyStartedError:
            saved = await self._db.get_transfer(transfer.transfer_id)
            return saved or transfer.initial_view()
        except RPCError as error:
            if _is_timeout(error):  # no worker answered in time; the run is started: answer 202
                saved = await self._db.get_transfer(transfer.transfer_id)
                return saved or transfer.initial_view()
            raise _temporal_unavailable() from None


def _is_timeout(error: RPCError) -> bool:
    return error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


def _auto_accept(bank: bool, caller: bool | None, settings: Settings) -> bool:
    """The bank's policy decides; a caller may only make a transfer more manual (unless the bank allows more)."""
    if caller is None:
        return bank
    if settings.allow_caller_auto_accept:
        return caller
    return bank and caller


def _max_fee(settings: Settings, request: TransferRequest) -> Decimal:
    """The most a quote's fees may be for us to accept it: MOJAFLOW_MAX_FEE, else fixed + rate × amount."""
    if settings.max_fee is not None:
        return settings.max_fee
    return settings.max_fee_fixed + settings.max_fee_rate * Decimal(request.amount)


def _reason(error: WorkflowUpdateFailedError, view: TransferView) -> str:
    cause = error.cause
    message = getattr(cause, "message", None) or str(cause)
    return message or f"the transfer is {view.current_state}"
