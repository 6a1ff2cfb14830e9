"""`OutboundTransferWorkflow`: one transfer from the bank's customer to a payee in the scheme.

The story, top to bottom in `_transfer`: find the payer's account at the CBS; resolve the payee (SDK
`POST /transfers`); wait for the party to be accepted; get a quote and check it; wait for the quote to be
accepted; hold the payer's funds; send the money step once; commit the hold on COMMITTED, release it only on
proof that no money moved, and reconcile with the switch when the answer is not conclusive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.core_banking import CbsParty, CoreBankingActivities, HoldRef, HoldRequest, PartyRef
    from activities.payment_manager import (
        MoneyStepResult,
        PartyLookupResult,
        PaymentManagerActivities,
        QuoteResult,
        SdkFailure,
        SdkTransferRef,
        SwitchState,
    )
    from mojaflow.codes import ErrorCode, from_fspiop, transfer_error
    from mojaflow.ilp import fulfilment_matches, is_fulfilment_shaped
    from mojaflow.models import (
        REPORTABLE_STATES,
        DecisionInput,
        DecisionRecord,
        OutboundTransferInput,
        QuoteView,
        ReconciliationCheckpoint,
        TransferState,
        TransferView,
        WaitRequest,
    )
    from mojaflow.temporal import SDK_TRANSFER_ID
    from workflows.quote_check import check_quote
    from workflows.transfer_state import (
        CBS_CALL,
        LOCAL_ACTIVITY_FAILURES,
        RECONCILE_CALL,
        SavedTransferState,
        TransferEnded,
        bounded_locally,
        refusal_code,
    )

__all__ = ["OutboundTransferWorkflow"]

S = TransferState

# The decline moves no money: a local activity, retried a few times.
SDK_CALL = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=90),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
)
# The party lookup and the party acceptance run on into the prepare at a misconfigured SDK (auto-accept flags):
# each is sent at most once. Local activities (two workflow tasks fewer than normal ones), each claiming its
# request in our database before it sends (mojaflow/sent_requests.py): a retry, or a re-run after a crash, finds
# the claim and answers what the first run got (kept with the claim), or "no answer" if that run died mid-request,
# without sending. So retrying is safe; it helps when the claim itself failed. Within an attempt the activity
# re-sends only what provably never left (connection refused, 503).
SDK_ONCE = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=120),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
)
# The money step: once, never retried. Heartbeats reveal a crashed worker within 20 s. The activity beats every
# 2 s, but the SDK sends beats to the server at most every 0.8 x the timeout: with 5 s that left a second of slack,
# and a busy worker's lagging event loop made the step look crashed (a needless reconciliation, answered 202).
MONEY_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=120),
    heartbeat_timeout=timedelta(seconds=20),
    retry_policy=RetryPolicy(maximum_attempts=1),
)
# Before anything is held, give up on an unreachable CBS after a while instead of waiting for ever.
CBS_LOOKUP = bounded_locally(CBS_CALL, timedelta(minutes=2))


@workflow.defn
class OutboundTransferWorkflow(SavedTransferState):
    @workflow.init
    def __init__(self, transfer: OutboundTransferInput) -> None:
        self._input = transfer
        if transfer.resume is None:
            self._view = transfer.initial_view()
            self._revision = 0
        else:  # a reconciliation that goes on from an earlier run
            self._view = transfer.resume.view.model_copy(deep=True)
            self._revision = transfer.resume.revision
        self._published = self._view.model_copy(deep=True)  # what callers see: saved to our database first
        self._party_decision: bool | None = None
        self._quote_decision: bool | None = None
        resume = transfer.resume
        self._payer_account_id: str | None = resume.payer_account_id if resume else None
        self._condition: str | None = resume.condition if resume else None  # the quote's ILP condition
        self._switch_saw_prepare = resume.switch_saw_prepare if resume else False
        self._unasked_prepare = False  # the SDK ran on into a prepare we did not send (sdk_misconfigured)
        self._hold: HoldRef | None = HoldRef(hold_id=resume.hold_id) if resume and resume.hold_id else None
        self._money_may_have_left = resume is not None  # from the money step on (or an SDK that ran on by itself)

    @workflow.run
    async def run(self, transfer: OutboundTransferInput) -> TransferView:
        try:
            await self._transfer()
        except TransferEnded:
            pass
        except asyncio.CancelledError:  # `temporal workflow cancel`: finish what money demands, then stop
            try:
                await self._after_cancel()
            except TransferEnded:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._published

    async def _transfer(self) -> None:
        if self._input.resume is not None:
            await self._resume_reconciliation(self._input.resume)
            return
        payer = await self._resolve_payer()
        self._payer_account_id = payer.account_id
        sdk_ref = await self._resolve_payee(payer)
        await self._decide_party()
        quote = await self._request_quote(sdk_ref)
        await self._decide_quote(sdk_ref, quote)
        hold = await self._hold_funds(sdk_ref, quote.transfer_amount, quote.currency)
        await self._check_quote_still_valid(sdk_ref, quote, hold)
        outcome = await self._send_money(sdk_ref, hold)
        await self._settle(hold, outcome)

    async def _after_cancel(self) -> None:
        """Before the money step nothing can have moved: release any hold and end ABORTED. After it, the
        switch decides: reconcile and settle as usual (the cancel cannot take back a prepare)."""
        sdk_ref = SdkTransferRef(sdk_transfer_id=self._view.sdk_transfer_id or "")
        if self._money_may_have_left and sdk_ref.sdk_transfer_id:
            outcome = await self._conclude(sdk_ref, self._hold, MoneyStepResult(outcome="UNKNOWN"))
            await self._settle(self._hold, outcome)
        if self._hold is not None:
            await self._release(self._hold, "cancelled before the money step")
        await self._end(S.ABORTED, ErrorCode.CANCELLED)

    # -- phases ------------------------------------------------------------------------------------

    async def _resolve_payer(self) -> CbsParty:
        await self._enter(S.RESOLVING_PARTY)
        payer = self._input.order.payer
        try:
            return await workflow.execute_local_activity_method(
                CoreBankingActivities.resolve_payer,
                PartyRef(id_type=payer.id_type, id_value=payer.id_value, id_sub_value=payer.id_sub_value),
                **CBS_LOOKUP,
            )
        except LOCAL_ACTIVITY_FAILURES as error:
            refusal = refusal_code(error)
            if refusal is None:
                await self._end(S.ERROR_OCCURRED, ErrorCode.CBS_UNAVAILABLE)
            if refusal in ("account_blocked", "account_closed"):
                await self._end(S.ERROR_OCCURRED, ErrorCode.PAYER_ACCOUNT_UNAVAILABLE)
            await self._end(S.ERROR_OCCURRED, ErrorCode.PAYER_NOT_FOUND, detail=refusal)
            raise

    async def _resolve_payee(self, payer: CbsParty) -> SdkTransferRef:
        order = self._input.order
        known = order.payer
        enriched = known.model_copy(
            update={
                "display_name": known.display_name or payer.display_name,
                "first_name": known.first_name or payer.first_name,
                "middle_name": known.middle_name or payer.middle_name,
                "last_name": known.last_name or payer.last_name,
                "date_of_birth": known.date_of_birth or payer.date_of_birth,
            }
        )
        try:
            result = await workflow.execute_local_activity_method(
                PaymentManagerActivities.request_party,
                order.model_copy(update={"payer": enriched}),
                **SDK_ONCE,
            )
        except LOCAL_ACTIVITY_FAILURES:
            result = PartyLookupResult(answered=False)
        if not result.answered:  # we hold nothing, and without the SDK's transferId there is nothing to ask
            await self._end(S.ERROR_OCCURRED, ErrorCode.SDK_ERROR, detail="no answer to the party lookup")
        self._view.sdk_transfer_id = result.sdk_transfer_id
        self._view.payee = result.payee
        self._view.timestamps.party_resolved_at = workflow.now()
        sdk_ref = SdkTransferRef(sdk_transfer_id=result.sdk_transfer_id or "")
        if result.went_past is not None and result.sdk_transfer_id:  # before any failure: a prepare may have left
            await self._reconcile_without_hold(sdk_ref, result.went_past, ErrorCode.SDK_MISCONFIGURED)
        if result.failure:
            await self._end_with_sdk_failure(result.failure)
        if result.sdk_state != "WAITING_FOR_PARTY_ACCEPTANCE" or not result.sdk_transfer_id:
            await self._end(S.ERROR_OCCURRED, ErrorCode.SDK_MISCONFIGURED)
        return sdk_ref

    async def _decide_party(self) -> None:
        if self._input.policy.auto_accept_party:
            return
        await self._enter(S.WAITING_FOR_PARTY_ACCEPTANCE)
        if not await self._wait_for(lambda: self._party_decision is not None):
            await self._end(S.ABORTED, ErrorCode.ACCEPTANCE_TIMEOUT)
        if not self._party_decision:  # 18.0.2 refuses {"acceptParty": false}: we simply do not go on
            await self._end(S.ABORTED, ErrorCode.PARTY_REJECTED)

    async def _request_quote(self, sdk_ref: SdkTransferRef) -> QuoteView:
        """`{"acceptParty": true}` runs on to the prepare at an SDK with AUTO_ACCEPT_QUOTES=true: sent once, and
        an answer that is not a quote waiting for us is reconciled like a money step."""
        await self._enter(S.REQUESTING_QUOTE)
        try:
            result = await workflow.execute_local_activity_method(
                PaymentManagerActivities.send_party_acceptance, sdk_ref, **SDK_ONCE
            )
        except LOCAL_ACTIVITY_FAILURES:
            result = QuoteResult(answered=False)
        if not result.answered:
            await self._reconcile_without_hold(
                sdk_ref, MoneyStepResult(outcome="UNKNOWN"), ErrorCode.SDK_ERROR, "no answer to the quote request"
            )
        if result.went_past is not None:
            await self._reconcile_without_hold(sdk_ref, result.went_past, ErrorCode.SDK_MISCONFIGURED)
        if result.failure:
            await self._end_with_sdk_failure(result.failure)
        if result.quote is None or result.sdk_state != "WAITING_FOR_QUOTE_ACCEPTANCE":
            await self._reconcile_without_hold(sdk_ref, MoneyStepResult(outcome="UNKNOWN"), ErrorCode.SDK_MISCONFIGURED)
        assert result.quote is not None
        self._view.quote = result.quote
        self._condition = result.quote.condition
        self._view.timestamps.quote_received_at = workflow.now()
        problem = check_quote(result.quote, self._input.order, now=workflow.now(), max_fee=self._input.policy.max_fee)
        if problem:
            await self._decline(sdk_ref)
            await self._end(S.ABORTED, problem[0], detail=problem[1] or None)
        return result.quote

    async def _decide_quote(self, sdk_ref: SdkTransferRef, quote: QuoteView) -> None:
        if self._input.policy.auto_accept_quote:
            return
        await self._enter(S.WAITING_FOR_QUOTE_ACCEPTANCE)
        decided = await self._wait_for(lambda: self._quote_decision is not None)
        if not decided or not self._quote_decision:
            await self._decline(sdk_ref)
            await self._end(S.ABORTED, ErrorCode.QUOTE_DECLINED if decided else ErrorCode.ACCEPTANCE_TIMEOUT)

    async def _hold_funds(self, sdk_ref: SdkTransferRef | None, amount: str, currency: str) -> HoldRef:
        """Only now is anything held: a declined quote or a timeout before this point holds nothing.
        `sdk_ref` None: the switch already committed (the SDK ran on by itself); the payer is debited anyway."""
        if sdk_ref is not None:
            await self._enter(S.HOLDING_FUNDS)
        hold_request = HoldRequest(
            hold_key=f"{self._view.transfer_id}-hold", account_id=self._payer_account_id or "", amount=amount,
            currency=currency,
        )  # fmt: skip
        try:
            hold = await self._durably(CoreBankingActivities.hold_funds, hold_request)
        except LOCAL_ACTIVITY_FAILURES as error:
            refusal = refusal_code(error)
            if sdk_ref is None:  # the money left: a person must recover it
                await self._end(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED, detail=f"hold refused: {refusal}")
            assert sdk_ref is not None
            await self._decline(sdk_ref)
            if refusal == "insufficient_funds":
                await self._end(S.ABORTED, ErrorCode.INSUFFICIENT_FUNDS)
            await self._end(S.ABORTED, ErrorCode.HOLD_REFUSED, detail=refusal)
            raise
        self._hold = hold
        self._view.hold_id = hold.hold_id
        self._view.timestamps.funds_held_at = workflow.now()
        return hold

    async def _check_quote_still_valid(self, sdk_ref: SdkTransferRef, quote: QuoteView, hold: HoldRef) -> None:
        if quote.expiration is not None and quote.expiration <= workflow.now():
            await self._release(hold, "quote expired before the money step")
            await self._decline(sdk_ref)
            await self._end(S.ABORTED, ErrorCode.QUOTE_EXPIRED)

    async def _send_money(self, sdk_ref: SdkTransferRef, hold: HoldRef) -> MoneyStepResult:
        """The one step that moves money: saved as TRANSFERRING first, sent once, never re-sent."""
        self._view.timestamps.transfer_sent_at = workflow.now()
        self._money_may_have_left = True
        await self._enter(S.TRANSFERRING)
        try:
            result = await workflow.execute_activity_method(
                PaymentManagerActivities.send_quote_acceptance, sdk_ref, **MONEY_CALL
            )
        except ActivityError:  # crashed worker, timeout: the prepare may or may not have reached the switch
            result = MoneyStepResult(outcome="UNKNOWN")
        return await self._conclude(sdk_ref, hold, result)

    # -- finding the switch's outcome: commit only on proof, release only on proof -----------------

    async def _conclude(self, sdk_ref: SdkTransferRef, hold: HoldRef | None, first: MoneyStepResult) -> MoneyStepResult:
        """The money step's final outcome. A COMMITTED counts only with a fulfilment that proves it; before any
        release, one `GET` must not contradict the answer; anything else is reconciled with the switch."""
        self._condition = self._condition or first.condition
        if first.outcome == "COMMITTED" and self._proves_commit(first.fulfilment):
            return first
        if first.outcome in ("ABORTED", "REJECTED"):
            confirmation = await self._ask_switch_once(sdk_ref)
            self._condition = self._condition or confirmation.condition
            if confirmation.state == "COMMITTED" and self._proves_commit(confirmation.fulfilment):
                return MoneyStepResult(outcome="COMMITTED")
            if confirmation.state in ("ABORTED", "NOT_FOUND"):
                return first
        return await self._reconcile(sdk_ref, hold, first)

    def _proves_commit(self, fulfilment: str | None) -> bool:
        if fulfilment is None:
            return not self._input.policy.require_fulfilment
        if self._condition is not None:
            if fulfilment_matches(fulfilment, self._condition):
                return True
            workflow.logger.error("the switch's fulfilment does not match the quote's condition: not a commit")
            self._view.last_error = transfer_error(ErrorCode.FULFILMENT_INVALID)
            return False
        if is_fulfilment_shaped(fulfilment):  # no condition was ever seen (the SDK ran on by itself)
            self._view.last_error = transfer_error(ErrorCode.FULFILMENT_UNVERIFIED)
            return True
        return False

    async def _ask_switch_once(self, sdk_ref: SdkTransferRef) -> SwitchState:
        try:
            return await workflow.execute_activity_method(
                PaymentManagerActivities.get_switch_state, sdk_ref, **RECONCILE_CALL
            )
        except ActivityError:
            return SwitchState(state="UNKNOWN")

    async def _reconcile(
        self, sdk_ref: SdkTransferRef, hold: HoldRef | None, first: MoneyStepResult
    ) -> MoneyStepResult:
        """Ask the switch until the outcome is final. 3208 (not found) proves nothing until the prepare's
        expiration plus a grace period has passed: counted from the prepare's own expiration when the SDK told
        it, else from now (the failure's observation: no prepare can have left after it)."""
        await self._enter(S.RECONCILING)
        policy = self._input.policy
        expiration = first.expiration or workflow.now() + timedelta(seconds=policy.transfer_expiry_s)
        give_up_not_found_at = expiration + timedelta(seconds=policy.reconcile_grace_s)
        return await self._ask_switch_until_final(sdk_ref, hold, give_up_not_found_at, timedelta(seconds=1))

    async def _reconcile_without_hold(
        self, sdk_ref: SdkTransferRef, first: MoneyStepResult, code: ErrorCode, detail: str | None = None
    ) -> None:
        """The SDK may have sent a prepare we did not ask for: find the switch's outcome, debit the payer if it
        committed, end ABORTED only on proof that no money moved. Never declines: the SDK is past that."""
        self._view.last_error = transfer_error(code, detail=detail)
        self._unasked_prepare = self._money_may_have_left = True
        outcome = await self._conclude(sdk_ref, None, first)
        await self._settle(None, outcome)

    async def _resume_reconciliation(self, checkpoint: ReconciliationCheckpoint) -> None:
        hold = HoldRef(hold_id=checkpoint.hold_id) if checkpoint.hold_id else None
        self._unasked_prepare = hold is None
        sdk_ref = SdkTransferRef(sdk_transfer_id=self._view.sdk_transfer_id or "")
        interval = timedelta(seconds=checkpoint.interval_s)
        outcome = await self._ask_switch_until_final(sdk_ref, hold, checkpoint.give_up_not_found_at, interval)
        await self._settle(hold, outcome)

    async def _ask_switch_until_final(
        self, sdk_ref: SdkTransferRef, hold: HoldRef | None, give_up_not_found_at: datetime, interval: timedelta
    ) -> MoneyStepResult:
        state, interval = await self._poll_switch(
            sdk_ref.sdk_transfer_id,
            give_up_not_found_at,
            interval,
            proves_commit=lambda answer: self._proves_commit(answer.fulfilment),
        )
        if state == "COMMITTED":
            return MoneyStepResult(outcome="COMMITTED")
        if state == "ABORTED":
            return MoneyStepResult(outcome="ABORTED")
        if state == "NOT_FOUND":
            return MoneyStepResult(outcome="REJECTED", failure=SdkFailure(http_status=500, fspiop_error_code="3208"))
        if self._resolution is not None:  # an operator's word (the `resolve` update); the switch still not final
            return MoneyStepResult(outcome=self._resolution.outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        checkpoint = ReconciliationCheckpoint(
            view=self._view,
            revision=self._revision,
            hold_id=hold.hold_id if hold else None,
            give_up_not_found_at=give_up_not_found_at,
            interval_s=interval.total_seconds(),
            payer_account_id=self._payer_account_id,
            condition=self._condition,
            switch_saw_prepare=self._switch_saw_prepare,
        )
        workflow.continue_as_new(self._input.model_copy(update={"resume": checkpoint}))

    async def _settle(self, hold: HoldRef | None, result: MoneyStepResult) -> None:
        if result.outcome == "COMMITTED":
            if hold is None:  # the switch committed what the SDK sent by itself: the payer is debited, once
                hold = await self._hold_funds(None, *self._amount_to_debit())
            try:
                await self._durably(CoreBankingActivities.commit_hold, hold, on_outage=lambda: self._enter(S.SETTLING))
            except LOCAL_ACTIVITY_FAILURES as error:
                await self._end(
                    S.ERROR_OCCURRED,
                    ErrorCode.SETTLEMENT_FAILED,
                    detail=f"hold {hold.hold_id}, switch COMMITTED, CBS refused: {refusal_code(error)}",
                )
            await self._end(S.COMPLETED)
        if hold is not None:
            await self._release(hold, f"switch {result.outcome}")
        if self._unasked_prepare:  # keep the reason: the SDK ran on by itself
            await self._end(S.ABORTED)
        if result.outcome == "ABORTED":
            await self._end(S.ABORTED, ErrorCode.TRANSFER_ABORTED, detail=self._resolution_detail())
        failure = result.failure or SdkFailure(http_status=500)
        if failure.fspiop_error_code == "3208":
            await self._end(S.ABORTED, ErrorCode.TRANSFER_NOT_FOUND, fspiop_error_code="3208")
        await self._end_with_sdk_failure(failure)

    def _amount_to_debit(self) -> tuple[str, str]:
        quote = self._view.quote
        if quote is not None and quote.transfer_amount:
            return quote.transfer_amount, quote.currency
        return self._input.order.amount, self._input.order.currency

    # -- updates and queries: the CBS decides, or waits for news -----------------------------------

    # Each decision is recorded with its update's id (the API derives it from the request's idempotency key):
    # Temporal answers a re-sent update with that id from the first one, without running the validator again,
    # and once the run is gone (continued as new, finished) the saved `decisions` tell the API what was taken.

    @workflow.update
    async def accept_party(self, decision: DecisionInput) -> TransferView:
        self._party_decision = decision.accept_party
        self._record_decision(S.WAITING_FOR_PARTY_ACCEPTANCE, bool(decision.accept_party), decision.actor)
        await self._wait_for_report(decision.wait_s, leaving=S.WAITING_FOR_PARTY_ACCEPTANCE)
        return self._published

    @accept_party.validator
    def _party_awaits_decision(self, decision: DecisionInput) -> None:
        if decision.accept_party is None or decision.accept_quote is not None:
            raise ValueError("send exactly one of acceptParty or acceptQuote")
        if self._published.current_state != S.WAITING_FOR_PARTY_ACCEPTANCE or self._party_decision is not None:
            raise ValueError(f"no party awaits acceptance (state {self._published.current_state})")

    @workflow.update
    async def accept_quote(self, decision: DecisionInput) -> TransferView:
        self._quote_decision = decision.accept_quote
        self._record_decision(S.WAITING_FOR_QUOTE_ACCEPTANCE, bool(decision.accept_quote), decision.actor)
        await self._wait_for_report(decision.wait_s, leaving=S.WAITING_FOR_QUOTE_ACCEPTANCE)
        return self._published

    @accept_quote.validator
    def _quote_awaits_decision(self, decision: DecisionInput) -> None:
        if decision.accept_quote is None or decision.accept_party is not None:
            raise ValueError("send exactly one of acceptParty or acceptQuote")
        if self._published.current_state != S.WAITING_FOR_QUOTE_ACCEPTANCE or self._quote_decision is not None:
            raise ValueError(f"no quote awaits acceptance (state {self._published.current_state})")

    @workflow.update
    async def wait_for_report(self, request: WaitRequest) -> TransferView:
        """Answers once the transfer needs the CBS (other than in `leaving`) or is final, or after `wait_s`, with
        what is saved."""
        await self._wait_for_report(request.wait_s, leaving=request.leaving)
        return self._published

    @workflow.query
    def view(self) -> TransferView:
        return self._published

    # -- helpers -----------------------------------------------------------------------------------

    def _record_decision(self, state: TransferState, accepted: bool, actor: str | None) -> None:
        """Kept in the view: saved, then shown to callers, with the next state change (the final one at the
        latest). Until then Temporal knows it by the update's id."""
        update = workflow.current_update_info()  # always set inside an update handler
        update_id = update.id if update is not None else ""
        self._view.decisions.append(
            DecisionRecord(state=state, accepted=accepted, update_id=update_id, decided_at=workflow.now(), actor=actor)
        )

    async def _wait_for_report(self, wait_s: float, leaving: TransferState | None = None) -> None:
        """Until the CBS must act or the transfer is final (other than `leaving`), at most `wait_s`."""

        def reportable() -> bool:
            state = self._published.current_state
            return state in REPORTABLE_STATES and state != leaving

        if wait_s <= 0:  # Prefer: respond-async
            return
        try:
            await workflow.wait_condition(reportable, timeout=timedelta(seconds=wait_s))
        except TimeoutError:
            pass

    async def _wait_for(self, condition: Callable[[], bool]) -> bool:
        """Waits for a decision until the acceptance deadline; False if none came."""
        try:
            await workflow.wait_condition(condition, timeout=timedelta(seconds=self._input.policy.acceptance_timeout_s))
        except TimeoutError:
            return False
        return True

    async def _decline(self, sdk_ref: SdkTransferRef) -> None:
        """Best effort: an SDK transfer we never accept lapses by itself; nothing was sent to the switch."""
        try:
            await workflow.execute_local_activity_method(
                PaymentManagerActivities.send_quote_decline, sdk_ref, **SDK_CALL
            )
        except LOCAL_ACTIVITY_FAILURES:
            workflow.logger.warning("could not tell the SDK that the quote is declined")

    async def _release(self, hold: HoldRef, why: str) -> None:
        """Give the held funds back (called only on proof that no money moved); a refusal needs a person."""
        try:
            await self._durably(CoreBankingActivities.release_hold, hold)
        except LOCAL_ACTIVITY_FAILURES as error:
            await self._end(
                S.ERROR_OCCURRED,
                ErrorCode.RELEASE_FAILED,
                detail=f"hold {hold.hold_id}, {why}, CBS refused: {refusal_code(error)}",
            )

    async def _end_with_sdk_failure(self, failure: SdkFailure) -> None:
        code = from_fspiop(failure.fspiop_error_code, failure.http_status)
        if code == ErrorCode.SDK_ERROR and failure.http_status == 503:
            code = ErrorCode.SDK_UNAVAILABLE
        await self._end(S.ERROR_OCCURRED, code, fspiop_error_code=failure.fspiop_error_code)

    def _search_attributes(self) -> list[SearchAttributeUpdate[Any]]:
        return [SDK_TRANSFER_ID.value_set(self._view.sdk_transfer_id)] if self._view.sdk_transfer_id else []
