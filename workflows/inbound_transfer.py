"""`InboundTransferWorkflow`: one transfer from a payer in the scheme to an account holder of the bank.

The story, top to bottom in `_transfer`: check the transfer against the quote we gave; reserve the credit at
the CBS (the API answers the SDK `RESERVED` from here); wait for the SDK's final notification until the
transfer's expiration plus a grace period; without a final word, ask the switch until it has one; then commit
the credit on COMMITTED, or release it. Never released after the switch committed, never committed twice.

A COMMITTED notification is the one word that credits money, and the backend API cannot tell who sent it (SDK
18.0.2 has no credentials). With `policy.confirm_commit` (MOJAFLOW_INBOUND_CONFIRM_COMMIT, on by default) it is
confirmed with the switch first (`GET /transfers/{id}` through the SDK; only `fulfil.body.transferState` counts).
If the switch does not say COMMITTED, the notification is logged as a security event and from then on only the
switch decides: the transfer is RECONCILING until it says COMMITTED or ABORTED (or 3208 past the deadline).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.core_banking import CoreBankingActivities, CreditRequest, ReservationRef
    from activities.payment_manager import PaymentManagerActivities, SdkTransferRef, SwitchState
    from mojaflow.codes import ErrorCode
    from mojaflow.inbound_models import InboundCheckpoint, InboundNotification, InboundTransferInput, cbs_refusal
    from mojaflow.models import (
        TransferState,
        TransferView,
        WaitRequest,
    )
    from mojaflow.temporal import HOME_TRANSACTION_ID
    from workflows.transfer_state import (
        LOCAL_ACTIVITY_FAILURES,
        SavedTransferState,
        TransferEnded,
        refusal_code,
    )

__all__ = ["InboundTransferWorkflow", "check_against_quote"]

S = TransferState


_FINAL_SWITCH_STATES = ("COMMITTED", "ABORTED")
# The confirmation of a COMMITTED notification: a read at the switch, so a local activity (no round trip through
# the server before the credit); asked once, any failure sends the transfer to the reconciliation loop.
CONFIRM_CALL = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=90), retry_policy=RetryPolicy(maximum_attempts=1)
)
# Not logged again on replay; carries the workflow id, never personal data.
security_log = workflow.LoggerAdapter(logging.getLogger("mojaflow.security"), None)


def check_against_quote(transfer: InboundTransferInput, now: datetime) -> tuple[ErrorCode, str] | None:
    """None if the transfer is the one we quoted; else why not (the field named, no personal data)."""
    quote = transfer.saved_quote
    if quote is None:
        return ErrorCode.QUOTE_MISMATCH, "quote.quoteId: no quote was given with this id"
    if transfer.currency != quote.currency:
        return ErrorCode.QUOTE_MISMATCH, "currency: differs from the quote"
    if transfer.quoted_currency != quote.currency:
        return ErrorCode.QUOTE_MISMATCH, "quote.transferAmountCurrency: differs from the quote"
    if Decimal(transfer.amount) != Decimal(quote.transfer_amount):
        return ErrorCode.QUOTE_MISMATCH, "amount: differs from the quote's transferAmount"
    if Decimal(transfer.quoted_transfer_amount) != Decimal(quote.transfer_amount):
        return ErrorCode.QUOTE_MISMATCH, "quote.transferAmount: differs from the quote"
    if transfer.payee_key != quote.payee_key:
        return ErrorCode.QUOTE_MISMATCH, "to: not the payee of the quote"
    if quote.expiration <= now:
        return ErrorCode.QUOTE_EXPIRED, "quote.expiration: the quote has expired"
    return None


@workflow.defn
class InboundTransferWorkflow(SavedTransferState):
    @workflow.init
    def __init__(self, transfer: InboundTransferInput) -> None:
        self._input = transfer
        if transfer.resume is None:
            self._view = transfer.initial_view()
            self._revision = 0
        else:  # a reconciliation that goes on from an earlier run
            self._view = transfer.resume.view.model_copy(deep=True)
            self._revision = transfer.resume.revision
        self._published = self._view.model_copy(deep=True)
        self._switch_says: str | None = None  # COMMITTED or ABORTED, from the SDK's final notification
        # False once a COMMITTED notification was contradicted by the switch: later ones are not listened to
        self._trust_notifications = transfer.resume.trust_notifications if transfer.resume else True
        self._ask_switch = False  # a notification without a final state (ERROR_OCCURRED): reconcile now

    @workflow.run
    async def run(self, transfer: InboundTransferInput) -> TransferView:
        try:
            await self._transfer()
        except TransferEnded:
            pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._published

    async def _transfer(self) -> None:
        if self._input.resume is not None:
            resume = self._input.resume
            reservation = ReservationRef(reservation_id=resume.reservation_id)
            interval = timedelta(seconds=resume.interval_s)
            await self._settle(reservation, await self._ask_switch_until_final(reservation, resume.deadline, interval))
            return
        await self._enter(S.RECEIVED)
        problem = check_against_quote(self._input, workflow.now())
        if problem:
            await self._end(S.ABORTED, problem[0], fspiop_error_code="3100", detail=problem[1])
        reservation = await self._reserve()
        outcome = await self._wait_for_outcome(reservation)
        await self._settle(reservation, outcome)

    # -- phases ------------------------------------------------------------------------------------

    async def _reserve(self) -> ReservationRef:
        """Reserve the payee's credit at the CBS, keyed by the Mojaloop transferId: a retry cannot double it."""
        quote = self._input.saved_quote
        assert quote is not None
        credit = CreditRequest(
            reservation_key=self._input.transfer_id,
            account_id=quote.account_id,
            amount=quote.payee_receive_amount,
            currency=quote.currency,
        )
        try:
            reservation = await self._durably(CoreBankingActivities.reserve_credit, credit)
        except LOCAL_ACTIVITY_FAILURES as error:
            refusal = refusal_code(error)
            if refusal is None:
                raise
            answer = cbs_refusal(refusal)
            await self._end(S.ABORTED, ErrorCode.CREDIT_REFUSED, fspiop_error_code=answer.fspiop_code, detail=refusal)
            raise
        self._view.home_transaction_id = reservation.reservation_id
        self._view.hold_id = reservation.reservation_id
        self._view.timestamps.funds_held_at = workflow.now()
        await self._enter(S.RESERVED)
        return reservation

    async def _wait_for_outcome(self, reservation: ReservationRef) -> str:
        """COMMITTED or ABORTED from the SDK's notification; without one by the deadline (or after an
        ERROR_OCCURRED notification), the switch's own answer; NOT_FOUND once past the deadline."""
        deadline = self._deadline()
        remaining = (deadline - workflow.now()).total_seconds()
        if remaining > 0:
            try:
                await workflow.wait_condition(
                    lambda: self._switch_says is not None or self._ask_switch,
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                pass
        if self._switch_says is not None:
            return await self._from_notification(reservation, deadline)
        await self._enter(S.RECONCILING)
        return await self._ask_switch_until_final(reservation, deadline, timedelta(seconds=1))

    async def _from_notification(self, reservation: ReservationRef, deadline: datetime) -> str:
        """The SDK's final word; a COMMITTED one only once the switch confirms it (`policy.confirm_commit`).
        Otherwise the switch alone decides, through the reconciliation loop."""
        said = self._switch_says
        assert said is not None
        if said != "COMMITTED" or not self._input.policy.confirm_commit:
            return said
        ref = SdkTransferRef(sdk_transfer_id=self._input.transfer_id)
        try:
            answer = await workflow.execute_local_activity_method(
                PaymentManagerActivities.get_switch_state, ref, **CONFIRM_CALL
            )
        except LOCAL_ACTIVITY_FAILURES:
            answer = SwitchState(state="UNKNOWN")
        if answer.state == "COMMITTED":
            return "COMMITTED"
        if answer.state == "UNKNOWN":  # no answer from the switch: nothing contradicts, nothing confirms
            workflow.logger.info("a COMMITTED notification could not be confirmed yet: reconciling")
        else:
            security_log.warning(
                "security: a COMMITTED notification for inbound transfer %s is contradicted by the switch (%s): "
                "not credited; reconciling with the switch",
                self._input.transfer_id,
                answer.state,
            )
        if answer.state in ("RESERVED", "RECEIVED"):
            self._switch_saw_prepare = True
        self._trust_notifications = False
        if self._view.current_state != S.RECONCILING:
            await self._enter(S.RECONCILING)
        return await self._ask_switch_until_final(reservation, deadline, timedelta(seconds=1))

    async def _ask_switch_until_final(
        self, reservation: ReservationRef, deadline: datetime, interval: timedelta
    ) -> str:
        """The switch's answer, unless the SDK's final notification comes first; without either after
        `reconcile_checks_per_run` questions, the reconciliation goes on in a new run."""
        state, interval = await self._poll_switch(
            self._input.transfer_id, deadline, interval, answered_otherwise=self._notified
        )
        if state is None:
            await workflow.wait_condition(workflow.all_handlers_finished)
        if self._notified():
            return await self._from_notification(reservation, deadline)
        if state is not None:
            return state
        if self._resolution is not None:  # an operator's word (the `resolve` update); the switch still not final
            return self._resolution.outcome
        checkpoint = InboundCheckpoint(
            view=self._view,
            revision=self._revision,
            reservation_id=reservation.reservation_id,
            deadline=deadline,
            interval_s=interval.total_seconds(),
            trust_notifications=self._trust_notifications,
        )
        workflow.continue_as_new(self._input.model_copy(update={"resume": checkpoint}))

    async def _settle(self, reservation: ReservationRef, outcome: str) -> None:
        if outcome == "COMMITTED":
            try:  # the CBS down: SETTLING (the switch committed, the credit waits) until it answers
                await self._durably(
                    CoreBankingActivities.commit_credit, reservation, on_outage=lambda: self._enter(S.SETTLING)
                )
            except LOCAL_ACTIVITY_FAILURES as error:
                await self._end(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED, detail=refusal_code(error))
            await self._end(S.COMMITTED)
        try:
            await self._durably(CoreBankingActivities.release_credit, reservation)
        except LOCAL_ACTIVITY_FAILURES as error:
            await self._end(S.ERROR_OCCURRED, ErrorCode.RELEASE_FAILED, detail=refusal_code(error))
        if outcome == "ABORTED":
            await self._end(S.ABORTED, ErrorCode.TRANSFER_ABORTED, detail=self._resolution_detail())
        await self._end(S.ABORTED, ErrorCode.TRANSFER_NOT_FOUND, fspiop_error_code="3208")

    # -- messages: the API waits for the reservation; the SDK's final notification -----------------

    @workflow.update
    async def wait_for_reservation(self, request: WaitRequest) -> TransferView:
        """Answers once the credit is reserved or refused (or after `wait_s`), with what is saved."""
        try:
            await workflow.wait_condition(
                lambda: self._published.current_state != S.RECEIVED, timeout=timedelta(seconds=request.wait_s)
            )
        except TimeoutError:
            pass
        return self._published

    @workflow.signal
    def notify(self, notification: InboundNotification) -> None:
        """The SDK's `PUT /transfers/{id}`. The first final state wins; later ones change nothing."""
        if self._switch_says is not None:
            return
        if notification.transfer_state in _FINAL_SWITCH_STATES:
            self._switch_says = notification.transfer_state
        else:
            self._ask_switch = True

    @workflow.query
    def view(self) -> TransferView:
        return self._published

    # -- helpers -----------------------------------------------------------------------------------

    def _notified(self) -> bool:
        """A final notification came, and notifications are still listened to."""
        return self._switch_says is not None and self._trust_notifications

    def _deadline(self) -> datetime:
        """The transfer's expiration (the quote's, else received + expiry) plus the grace period."""
        policy = self._input.policy
        quote = self._input.saved_quote
        expiration = self._input.quoted_expiration or (quote.expiration if quote else None)
        if expiration is None:
            expiration = self._input.received_at + timedelta(seconds=policy.transfer_expiry_s)
        return expiration + timedelta(seconds=policy.reconcile_grace_s)

    def _search_attributes(self) -> list[SearchAttributeUpdate[Any]]:
        home = self._view.home_transaction_id
        return [HOME_TRANSACTION_ID.value_set(home)] if home else []
