"""What the backend API does for the SDK: party lookups and quotes straight from the CBS (no money held),
transfers through `InboundTransferWorkflow`, final notifications as signals, reads from our database.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.core_banking import CbsParty, CoreBankingClient, PartyRef
from activities.errors import CoreBankingRefused, CoreBankingUnavailable
from api.backend.errors import BackendError
from mojaflow.database import Database
from mojaflow.inbound_models import (
    BackendParty,
    InboundNotification,
    InboundPolicy,
    InboundQuote,
    InboundTransferInput,
    NotificationBody,
    QuoteRequestBody,
    TransferBody,
    cbs_refusal,
    mojaloop_amount,
    party_key,
)
from mojaflow.keys import load_party_hash_ring
from mojaflow.log_context import bind_transfer_id
from mojaflow.models import Direction, PartyView, TransferState, TransferView, WaitRequest
from mojaflow.settings import Settings
from mojaflow.temporal import (
    CLIENT_KEY,
    DIRECTION,
    MOJAFLOW_STATE,
    SDK_TRANSFER_ID,
    inbound_workflow_id,
    retrieve_start_outcome,
)
from workflows.inbound_transfer import InboundTransferWorkflow

__all__ = ["InboundService"]

log = logging.getLogger("mojaflow.api")

_SPEC_STATE = {  # our state → the backend spec's transferState
    TransferState.RECEIVED: "RECEIVED",
    TransferState.RESERVED: "RESERVED",
    TransferState.RECONCILING: "RESERVED",
    TransferState.COMMITTED: "COMMITTED",
}


def _unavailable(what: str) -> BackendError:
    return BackendError(503, "2003", f"{what} did not answer; retry later")


def _timestamp(value: datetime) -> str:
    """The spec's timestamp: milliseconds and `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class InboundService:
    def __init__(self, client: Client, database: Database, cbs: CoreBankingClient, settings: Settings) -> None:
        self._client = client
        self._db = database
        self._cbs = cbs
        self._settings = settings
        self._party_hash_ring = load_party_hash_ring(settings)  # the first key makes payee keys, all match

    # -- parties and quotes: the CBS directly --------------------------------------------------------

    async def party(self, id_type: str, id_value: str, id_sub_value: str | None) -> dict[str, Any]:
        """The account holder as the spec's `transferParty`; refused when unknown or not active."""
        holder = await self._account_holder(id_type, id_value, id_sub_value)
        party: dict[str, Any] = {"idType": id_type, "idValue": id_value}
        if id_sub_value:
            party["idSubValue"] = id_sub_value
        for name in ("display_name", "first_name", "middle_name", "last_name", "date_of_birth"):
            value = getattr(holder, name)
            if value:
                party[_camel(name)] = value
        if holder.currency:
            party["supportedCurrencies"] = [holder.currency]
        return party

    async def quote(self, request: QuoteRequestBody) -> dict[str, Any]:
        """The payee-side quote under the fee/commission policy, once the CBS says the account can receive it.
        Saved by quoteId (replaced when the SDK asks again), so the transfer can be checked against it."""
        self._check_currency(request.currency)
        fee, commission = self._settings.inbound_fee, self._settings.inbound_commission
        amount = Decimal(request.amount)
        if request.amount_type == "SEND":
            transfer_amount, receive_amount = amount, amount - fee + commission
        else:
            transfer_amount, receive_amount = amount + fee - commission, amount
        if receive_amount <= 0 or transfer_amount <= 0:
            raise BackendError(400, "5100", "amount: too small to cover the payee FSP's fee")
        now = datetime.now(UTC)
        expiration = now + timedelta(seconds=self._settings.quote_expiry_s)
        if request.expiration is not None:
            asked = request.expiration
            asked = asked if asked.tzinfo else asked.replace(tzinfo=UTC)
            if asked <= now:
                raise BackendError(400, "3100", "expiration: already passed")
            expiration = min(expiration, asked)
        payee = request.to
        holder = await self._account_holder(payee.id_type, payee.id_value, payee.id_sub_value)
        await self._cbs_call(
            self._cbs.check_credit(holder.account_id, mojaloop_amount(receive_amount), request.currency)
        )
        saved = InboundQuote(
            quote_id=request.quote_id,
            transaction_id=request.transaction_id,
            amount_type=request.amount_type,
            currency=request.currency,
            transfer_amount=mojaloop_amount(transfer_amount),
            payee_receive_amount=mojaloop_amount(receive_amount),
            fee=mojaloop_amount(fee),
            commission=mojaloop_amount(commission),
            expiration=expiration,
            account_id=holder.account_id,
            payee_key=party_key(self._party_hash_ring.primary, payee.id_type, payee.id_value, payee.id_sub_value),
            payee_name=holder.display_name,
        )
        await self._db.save_quote(saved.quote_id, saved.transaction_id, saved.model_dump(mode="json"))
        currency = request.currency
        return {
            "quoteId": saved.quote_id,
            "transactionId": saved.transaction_id,
            "transferAmount": saved.transfer_amount,
            "transferAmountCurrency": currency,
            "payeeReceiveAmount": saved.payee_receive_amount,
            "payeeReceiveAmountCurrency": currency,
            "payeeFspFeeAmount": saved.fee,
            "payeeFspFeeAmountCurrency": currency,
            "payeeFspCommissionAmount": saved.commission,
            "payeeFspCommissionAmountCurrency": currency,
            "expiration": _timestamp(expiration),
        }

    # -- transfers: the workflow ---------------------------------------------------------------------

    async def transfer(self, request: TransferBody) -> dict[str, Any]:
        """Start (or join) the transfer's workflow and wait until the credit is reserved or refused.
        A duplicate POST joins the same run (workflow id from the transferId) and gets the same answer."""
        bind_transfer_id(request.transfer_id)  # the request's log lines are about this transfer
        self._check_currency(request.currency)
        saved = await self._db.get_quote(request.quote.quote_id)
        transfer = self._workflow_input(request, InboundQuote.model_validate(saved) if saved else None)
        view = await self._start_and_wait(transfer)
        return _transfer_answer(view)

    async def notify(self, transfer_id: str, body: NotificationBody) -> None:
        """Deliver the final notification as a signal (durable once Temporal has it): answered at once,
        the CBS commit or release follows. For a finished transfer it changes nothing."""
        if body.transfer_id is not None and body.transfer_id != transfer_id:
            raise BackendError(400, "3100", "transferId: differs from the transferId in the path")
        final = body.final_notification
        if final is None and body.current_state != "ERROR_OCCURRED":
            raise BackendError(400, "3100", "finalNotification: required unless currentState is ERROR_OCCURRED")
        notification = InboundNotification(
            transfer_state=final.transfer_state if final else None, current_state=body.current_state
        )
        handle = self._client.get_workflow_handle(inbound_workflow_id(transfer_id))
        try:
            await handle.signal(InboundTransferWorkflow.notify, notification)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise _unavailable("Temporal") from None
            stored = await self._db.find_transfer(transfer_id)
            if stored is None or stored.view.direction != Direction.INBOUND:
                # The SDK ignores our answer to a notification; a 404 would only fail pm4ml's acceptance runs. We
                # never reserved anything for it, so there is nothing to commit or release: say so in the log.
                log.warning("final notification for inbound transfer %s, which we never had: ignored", transfer_id)
                return
            # finished already: nothing left to decide

    async def get(self, transfer_id: str) -> dict[str, Any]:
        """The spec's `transferDetailsResponse`, from our database (party ids are not kept: names only)."""
        stored = await self._db.find_transfer(transfer_id)
        if stored is None or stored.view.direction != Direction.INBOUND:
            raise BackendError(404, "3208", "transfer id not found")
        view = stored.view
        stamps = view.timestamps
        when = stamps.finished_at or stamps.funds_held_at or stamps.received_at or datetime.now(UTC)
        answer: dict[str, Any] = {
            "transferId": view.transfer_id,
            "homeTransactionId": view.home_transaction_id or "",
            "from": _party(view.payer),
            "to": _party(view.payee),
            "amountType": view.amount_type,
            "currency": view.currency,
            "amount": view.amount,
            "transactionType": "TRANSFER",
            "transferState": _SPEC_STATE.get(view.current_state, "ABORTED"),
            "timestamp": _timestamp(when),
        }
        return answer

    # -- helpers -------------------------------------------------------------------------------------

    def _check_currency(self, currency: str) -> None:
        """A currency the bank does not serve at all (MOJAFLOW_CURRENCIES) is refused before any party lookup."""
        if currency not in self._settings.currencies:
            raise BackendError(400, "5106", f"currency: {currency} is not served here")

    async def _account_holder(self, id_type: str, id_value: str, id_sub_value: str | None) -> CbsParty:
        holder = await self._cbs_call(
            self._cbs.get_party(PartyRef(id_type=id_type, id_value=id_value, id_sub_value=id_sub_value))
        )
        if holder.status != "active":
            refusal = cbs_refusal(f"account_{holder.status}")
            raise BackendError(refusal.http_status, refusal.fspiop_code, refusal.message)
        return holder

    @staticmethod
    async def _cbs_call(call: Any) -> Any:
        try:
            return await call
        except CoreBankingRefused as error:
            refusal = cbs_refusal(error.code)
            raise BackendError(refusal.http_status, refusal.fspiop_code, refusal.message) from None
        except CoreBankingUnavailable:
            raise _unavailable("the core banking system") from None

    def _workflow_input(self, request: TransferBody, quote: InboundQuote | None) -> InboundTransferInput:
        settings = self._settings
        payer = request.from_party
        payee = request.to
        return InboundTransferInput(
            transfer_id=request.transfer_id,
            client_key=settings.default_client_key,
            product=settings.inbound_product,
            payment_channel=settings.inbound_payment_channel,
            amount_type=request.amount_type,
            amount=request.amount,
            currency=request.currency,
            quote_id=request.quote.quote_id,
            quoted_transfer_amount=request.quote.transfer_amount,
            quoted_currency=request.quote.transfer_amount_currency,
            quoted_expiration=request.quote.expiration,
            payee_key=self._payee_key(payee, quote),
            payer=PartyView(name=payer.name(), fsp_id=payer.fsp_id),
            payee_fsp_id=payee.fsp_id,
            saved_quote=quote,
            policy=InboundPolicy(
                transfer_expiry_s=settings.transfer_expiry_s,
                reconcile_grace_s=settings.reconcile_grace_s,
                reconcile_max_interval_s=settings.reconcile_max_interval_s,
                reconcile_checks_per_run=settings.reconcile_checks_per_run,
                confirm_commit=settings.inbound_confirm_commit,
            ),
            received_at=datetime.now(UTC),
        )

    def _payee_key(self, payee: BackendParty, quote: InboundQuote | None) -> str:
        """The payee's key under the ring key its quote was saved with (a rotation in between still matches);
        under the first key when no key of the ring gives the quote's (the workflow then refuses the mismatch)."""
        keys = [party_key(key, payee.id_type, payee.id_value, payee.id_sub_value) for key in self._party_hash_ring.keys]
        return next((key for key in keys if quote is not None and key == quote.payee_key), keys[0])

    async def _start_and_wait(self, transfer: InboundTransferInput) -> TransferView:
        start = WithStartWorkflowOperation(
            InboundTransferWorkflow.run,
            transfer,
            id=inbound_workflow_id(transfer.transfer_id),
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(MOJAFLOW_STATE, TransferState.RECEIVED.value),
                    SearchAttributePair(SDK_TRANSFER_ID, transfer.transfer_id),
                    SearchAttributePair(CLIENT_KEY, transfer.client_key),
                    SearchAttributePair(DIRECTION, Direction.INBOUND.value),
                ]
            ),
        )
        try:
            view = await asyncio.wait_for(
                self._client.execute_update_with_start_workflow(
                    InboundTransferWorkflow.wait_for_reservation,
                    WaitRequest(wait_s=self._settings.inbound_reservation_wait_s),
                    start_workflow_operation=start,
                    rpc_timeout=timedelta(seconds=self._settings.inbound_reservation_wait_s + 1),
                ),
                timeout=self._settings.inbound_reservation_wait_s + 2,
            )
        except WorkflowAlreadyStartedError:  # finished already (REJECT_DUPLICATE): answer what it came to
            stored = await self._db.get_transfer(transfer.transfer_id)
            if stored is None:
                raise _unavailable("Temporal") from None
            return stored
        except (TimeoutError, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise _unavailable("the core banking system or Temporal") from None
        finally:
            retrieve_start_outcome(start)
        if view.current_state == TransferState.RECEIVED:  # the CBS did not answer in time; the run goes on
            raise _unavailable("the core banking system")
        return view


def _transfer_answer(view: TransferView) -> dict[str, Any]:
    """`transferResponse` for a reserved (or later) transfer; the FSPIOP error for a refused one."""
    if view.home_transaction_id and view.current_state in _SPEC_STATE:
        return {"homeTransactionId": view.home_transaction_id, "transferState": _SPEC_STATE[view.current_state]}
    error = view.last_error
    if view.home_transaction_id is None and error is not None:
        status = 404 if error.fspiop_error_code == "3204" else 400
        detail = error.message
        raise BackendError(status, error.fspiop_error_code or "5100", detail)
    # reserved once, then aborted or failed: it will not be reserved again
    raise BackendError(400, "5105", f"the transfer is already {view.current_state.value.lower()}")


def _party(view: PartyView | None) -> dict[str, Any]:
    party: dict[str, Any] = {}
    if view and view.name:
        party["displayName"] = view.name
    if view and view.fsp_id:
        party["fspId"] = view.fsp_id
    return party


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
