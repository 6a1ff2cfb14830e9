"""What the client API's front doors do with transfers: idempotent starts, decisions as workflow updates
(`api.transfer_decisions`), reads from our database. Owns the Temporal client and the database; takes domain
commands (`api.commands`) and raises domain errors (`api.errors`), so each door keeps its own wire format.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
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
from temporalio.service import RPCError

from api.auth import Caller
from api.commands import Acceptance, DecideTransfer, Outcome, StartTransfer
from api.errors import TemporalUnavailable, TransferNotFound
from api.idempotency import Idempotency
from api.transfer_decisions import Decisions, is_timeout
from mojaflow.database import Database
from mojaflow.keys import load_party_hash_ring
from mojaflow.log_context import bind_transfer_id
from mojaflow.models import (
    REPORTABLE_STATES,
    Direction,
    OutboundTransferInput,
    TransferPolicy,
    TransferRecord,
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

__all__ = ["TransferService", "transfer_policy"]


class TransferService:
    def __init__(self, client: Client, database: Database, settings: Settings) -> None:
        self._client = client
        self._db = database
        self._settings = settings
        self._idempotency = Idempotency(database, load_party_hash_ring(settings))
        # RECEIVED's webhook event and deliveries, written with it and claimed by none: the next round of some
        # worker's dispatcher claims them (mojaflow/webhook_outbox.py), the sweepers should no round come.
        self._outbox = Outbox(database, None, settings)
        self._decisions = Decisions(client, database, self._idempotency)

    async def create(self, command: StartTransfer, wait_s: float) -> Outcome:
        """Start the transfer once per idempotency key; a replay answers the same transfer, never a second.
        Raises `IdempotencyKeyReused`, `TemporalUnavailable`."""
        claim = await self._idempotency.claim(command.idempotency, command.fingerprint, str(uuid.uuid4()))
        bind_transfer_id(claim.transfer_id)  # the request's log lines are about this transfer from here on
        transfer = self._workflow_input(claim.transfer_id, command)
        workflow_id = outbound_workflow_id(command.idempotency.client_key, command.idempotency.key)
        requester = command.requester
        initial = TransferRecord(
            view=transfer.initial_view(),
            revision=0,
            workflow_id=workflow_id,
            client_key=requester.client_key,
            product=requester.product,
            payment_channel=requester.payment_channel,
        )
        if claim.created:
            await self._outbox.save(initial)
            view = await self._start(workflow_id, transfer, wait_s)
            return Outcome(view, settled=view.current_state in REPORTABLE_STATES)
        saved = await self._db.get_transfer(claim.transfer_id)
        if saved is None or saved.current_state == TransferState.RECEIVED:
            # The first attempt may have died before it saved or started the transfer: finish its job.
            await self._outbox.save(initial)  # a no-op if it was saved (same revision); starts unstarted deliveries
            await self._start(workflow_id, transfer, 0)
        current = await self._db.get_transfer(claim.transfer_id)
        assert current is not None  # saved above if it was not already
        return Outcome(current, settled=current.current_state in REPORTABLE_STATES, replayed=True)

    async def decide(self, command: DecideTransfer, wait_s: float) -> Outcome:
        """Deliver a decision at most once per key, whatever failed before (`api.transfer_decisions`). Raises
        `TransferNotFound`, `HomeTransactionMismatch`, `IdempotencyKeyReused`, `InvalidState`, `TemporalUnavailable`."""
        return await self._decisions.decide(command, wait_s)

    async def wait(self, transfer_id: str, wait_s: float) -> TransferView:
        """The transfer once it reaches a state worth answering, or as it stands after `wait_s` (or once its run is
        over): for a replay that should answer as a first request would. Raises `TransferNotFound`."""
        stored = await self._db.find_transfer(transfer_id)
        if stored is None:
            raise TransferNotFound(transfer_id)
        if stored.view.current_state in REPORTABLE_STATES or wait_s <= 0:
            return stored.view
        handle = self._client.get_workflow_handle(stored.workflow_id)
        try:
            return await asyncio.wait_for(
                handle.execute_update(
                    OutboundTransferWorkflow.wait_for_report,
                    WaitRequest(wait_s=wait_s),
                    rpc_timeout=timedelta(seconds=wait_s + 5),
                ),
                timeout=wait_s + 6,
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError, RPCError):
            current = await self._db.find_transfer(transfer_id)  # e.g. the run ended meanwhile: saved at its end
            return current.view if current is not None else stored.view

    async def get(self, caller: Caller, transfer_id: str) -> TransferView:
        """Another client's transfer is not found, as an unknown one: no existence oracle."""
        stored = await self._db.find_transfer(transfer_id)
        if stored is None or not caller.may_read(stored.client_key):
            raise TransferNotFound(transfer_id)
        if caller.outbound_only and stored.view.direction != Direction.OUTBOUND:
            raise TransferNotFound(transfer_id)
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
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[tuple[TransferView, datetime]]:
        rows = await self._db.list_transfers(
            direction=direction.value if direction else None,
            state=state.value if state else None,
            home_transaction_id=home_transaction_id,
            client_key=caller.read_scope,
            limit=limit,
            after=after,
            created_from=created_from,
            created_to=created_to,
        )
        return list(rows)

    def _workflow_input(self, transfer_id: str, command: StartTransfer) -> OutboundTransferInput:
        return OutboundTransferInput(
            transfer_id=transfer_id,
            client_key=command.requester.client_key,
            product=command.requester.product,
            payment_channel=command.requester.payment_channel,
            order=command.order,
            policy=transfer_policy(self._settings, command.acceptance, command.order.amount),
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
                    SearchAttributePair(HOME_TRANSACTION_ID, transfer.order.home_transaction_id),
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
            if is_timeout(error):  # no worker answered in time; the run is started: answer 202
                saved = await self._db.get_transfer(transfer.transfer_id)
                return saved or transfer.initial_view()
            raise TemporalUnavailable() from None


def transfer_policy(settings: Settings, acceptance: Acceptance, amount: str) -> TransferPolicy:
    """The settings a transfer runs under, fixed when it starts."""
    if acceptance.binding:
        party, quote = bool(acceptance.party), bool(acceptance.quote)
    else:
        party = _auto_accept(settings.auto_accept_party, acceptance.party, settings)
        quote = _auto_accept(settings.auto_accept_quote, acceptance.quote, settings)
    return TransferPolicy(
        auto_accept_party=party,
        auto_accept_quote=quote,
        max_fee=_max_fee(settings, amount),
        acceptance_timeout_s=settings.acceptance_timeout_s,
        transfer_expiry_s=settings.transfer_expiry_s,
        reconcile_grace_s=settings.reconcile_grace_s,
        reconcile_max_interval_s=settings.reconcile_max_interval_s,
        reconcile_checks_per_run=settings.reconcile_checks_per_run,
        require_fulfilment=settings.reconcile_require_fulfilment,
    )


def _auto_accept(bank: bool, caller: bool | None, settings: Settings) -> bool:
    """The bank's policy decides; a caller may only make a transfer more manual (unless the bank allows more)."""
    if caller is None:
        return bank
    if settings.allow_caller_auto_accept:
        return caller
    return bank and caller


def _max_fee(settings: Settings, amount: str) -> Decimal:
    """The most a quote's fees may be for us to accept it: MOJAFLOW_MAX_FEE, else fixed + rate × amount."""
    if settings.max_fee is not None:
        return settings.max_fee
    return settings.max_fee_fixed + settings.max_fee_rate * Decimal(amount)
