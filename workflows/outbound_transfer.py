"""`OutboundTransferWorkflow`: one transfer from the bank's customer to a payee in the scheme.

The story, top to bottom in `_transfer`: find the payer's account at the CBS; resolve the payee (SDK
`POST /transfers`); wait for the party to be accepted; get a quote and check it; wait for the quote to be
accepted; hold the payer's funds; send the money step once; commit the hold on COMMITTED, release it only on
proof that no money moved, and reconcile with the switch when the answer is not conclusive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.core_banking import CbsParty, CoreBankingActivities, HoldRef, HoldRequest, PartyRef
    from activities.payment_manager import MoneyStepResult, PaymentManagerActivities, SdkFailure, SdkTransferRef
    from mojaflow.codes import ErrorCode, from_fspiop
    from mojaflow.models import (
        REPORTABLE_STATES,
        AcceptanceDecision,
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
        SavedTransferState,
        TransferEnded,
        refusal_code,
    )

__all__ = ["OutboundTransferWorkflow"]

S = TransferState
ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")

# SDK calls before the money step move no money and are quick (the SDK gives up on the switch after 30 s):
# local activities, retried a few times. The SDK's POST is not idempotent, but a re-run after a crash only
# leaves an unused SDK record waiting for acceptance.
SDK_CALL = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=90),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
)
# The money step: once, never retried. Heartbeats reveal a crashed worker within seconds.
MONEY_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=120),
    heartbeat_timeout=timedelta(seconds=5),
    retry_policy=RetryPolicy(maximum_attempts=1),
)
# Before anything is held, give up on an unreachable CBS after a while instead of waiting for ever.
CBS_LOOKUP = workflow.LocalActivityConfig(**{**CBS_CALL, "schedule_to_close_timeout": timedelta(minutes=2)})


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

    @workflow.run
    async def run(self, transfer: OutboundTransferInput) -> TransferView:
        try:
            await self._transfer()
        except TransferEnded:
            pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._published

    async def _transfer(self) -> None:
        if self._input.resume is not None:
            await self._resume_reconciliation(self._input.resume)
            return
        payer = await self._resolve_payer()
        sdk_ref = await self._resolve_payee(payer)
        await self._decide_party()
        quote = await self._request_quote(sdk_ref)
        await self._decide_quote(sdk_ref, quote)
        hold = await self._hold_funds(sdk_ref, payer, quote)
        outcome = await self._send_money(sdk_ref, hold)
        await self._settle(hold, outcome)

    # -- phases ------------------------------------------------------------------------------------

    async def _resolve_payer(self) -> CbsParty:
        await self._enter(S.RESOLVING_PARTY)
        payer = self._input.request.from_party
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
        request = self._input.request
        known = request.from_party
        enriched = known.model_copy(
            update={
                "display_name": known.display_name or payer.display_name,
                "first_name": known.first_name or payer.first_name,
                "middle_name": known.middle_name or payer.middle_name,
                "last_name": known.last_name or payer.last_name,
                "date_of_birth": known.date_of_birth or payer.date_of_birth,
            }
        )
        result = await self._call_sdk(
            PaymentManagerActivities.request_party, request.model_copy(update={"from_party": enriched})
        )
        if result.failure:
            await self._end_with_sdk_failure(result.failure)
        self._view.sdk_transfer_id = result.sdk_transfer_id
        self._view.payee = result.payee
        self._view.timestamps.party_resolved_at = workflow.now()
        if result.sdk_state != "WAITING_FOR_PARTY_ACCEPTANCE" or not result.sdk_transfer_id:
            await self._end(S.ERROR_OCCURRED, ErrorCode.SDK_MISCONFIGURED)
        return SdkTransferRef(sdk_transfer_id=result.sdk_transfer_id or "")

    async def _decide_party(self) -> None:
        if self._input.policy.auto_accept_party:
            return
        await self._enter(S.WAITING_FOR_PARTY_ACCEPTANCE)
        if not await self._wait_for(lambda: self._party_decision is not None):
            await self._end(S.ABORTED, ErrorCode.ACCEPTANCE_TIMEOUT)
        if not self._party_decision:  # 18.0.2 refuses {"acceptParty": false}: we simply do not go on
            await self._end(S.ABORTED, ErrorCode.PARTY_REJECTED)

    async def _request_quote(self, sdk_ref: SdkTransferRef) -> QuoteView:
        await self._enter(S.REQUESTING_QUOTE)
        result = await self._call_sdk(PaymentManagerActivities.send_party_acceptance, sdk_ref)
        if result.failure or result.quote is None:
            await self._end_with_sdk_failure(result.failure or SdkFailure(http_status=200))
        assert result.quote is not None
        self._view.quote = result.quote
        self._view.timestamps.quote_received_at = workflow.now()
        problem = check_quote(result.quote, self._input.request, now=workflow.now(), max_fee=self._input.policy.max_fee)
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

    async def _hold_funds(self, sdk_ref: SdkTransferRef, payer: CbsParty, quote: QuoteView) -> HoldRef:
        """Only now is anything held: a declined quote or a timeout before this point holds nothing."""
        await self._enter(S.HOLDING_FUNDS)
        hold_request = HoldRequest(
            hold_key=f"{self._view.transfer_id}-hold",
            account_id=payer.account_id,
            amount=quote.transfer_amount,
            currency=quote.currency,
        )
        try:
            hold = await workflow.execute_local_activity_method(
                CoreBankingActivities.hold_funds, hold_request, **CBS_CALL
            )
        except LOCAL_ACTIVITY_FAILURES as error:
            refusal = refusal_code(error)
            if refusal is None:
                raise
            await self._decline(sdk_ref)
            if refusal == "insufficient_funds":
                await self._end(S.ABORTED, ErrorCode.INSUFFICIENT_FUNDS)
            await self._end(S.ABORTED, ErrorCode.HOLD_REFUSED, detail=refusal)
            raise
        self._view.timestamps.funds_held_at = workflow.now()
        if quote.expiration is not None and quote.expiration <= workflow.now():
            await self._release(hold)
            await self._decline(sdk_ref)
            await self._end(S.ABORTED, ErrorCode.QUOTE_EXPIRED)
        return hold

    async def _send_money(self, sdk_ref: SdkTransferRef, hold: HoldRef) -> MoneyStepResult:
        """The one step that moves money: saved as TRANSFERRING first, sent once, never re-sent."""
        self._view.timestamps.transfer_sent_at = workflow.now()
        await self._enter(S.TRANSFERRING)
        try:
            result = await workflow.execute_activity_method(
                PaymentManagerActivities.send_quote_acceptance, sdk_ref, **MONEY_CALL
            )
        except ActivityError:  # crashed worker, timeout: the prepare may or may not have reached the switch
            result = MoneyStepResult(outcome="UNKNOWN")
        if result.outcome == "UNKNOWN":
            return await self._reconcile(sdk_ref, hold, result)
        return result

    async def _reconcile(self, sdk_ref: SdkTransferRef, hold: HoldRef, first: MoneyStepResult) -> MoneyStepResult:
        """Ask the switch until the outcome is final. 3208 (not found) proves nothing until the prepare's
        expiration plus a grace period has passed: only then can it no longer be committed."""
        await self._enter(S.RECONCILING)
        policy = self._input.policy
        sent_at = self._view.timestamps.transfer_sent_at or workflow.now()
        expiration = first.expiration or sent_at + timedelta(seconds=policy.transfer_expiry_s)
        give_up_not_found_at = expiration + timedelta(seconds=policy.reconcile_grace_s)
        return await self._ask_switch_until_final(sdk_ref, hold, give_up_not_found_at, timedelta(seconds=1))

    async def _resume_reconciliation(self, checkpoint: ReconciliationCheckpoint) -> None:
        hold = HoldRef(hold_id=checkpoint.hold_id)
        sdk_ref = SdkTransferRef(sdk_transfer_id=self._view.sdk_transfer_id or "")
        interval = timedelta(seconds=checkpoint.interval_s)
        outcome = await self._ask_switch_until_final(sdk_ref, hold, checkpoint.give_up_not_found_at, interval)
        await self._settle(hold, outcome)

    async def _ask_switch_until_final(
        self, sdk_ref: SdkTransferRef, hold: HoldRef, give_up_not_found_at: datetime, interval: timedelta
    ) -> MoneyStepResult:
        state, interval = await self._poll_switch(sdk_ref.sdk_transfer_id, give_up_not_found_at, interval)
        if state == "COMMITTED":
            return MoneyStepResult(outcome="COMMITTED")
        if state == "ABORTED":
            return MoneyStepResult(outcome="ABORTED")
        if state == "NOT_FOUND":
            return MoneyStepResult(outcome="REJECTED", failure=SdkFailure(http_status=500, fspiop_error_code="3208"))
        await workflow.wait_condition(workflow.all_handlers_finished)
        checkpoint = ReconciliationCheckpoint(
            view=self._view,
            revision=self._revision,
            hold_id=hold.hold_id,
            give_up_not_found_at=give_up_not_found_at,
            interval_s=interval.total_seconds(),
        )
        workflow.continue_as_new(self._input.model_copy(update={"resume": checkpoint}))

    async def _settle(self, hold: HoldRef, result: MoneyStepResult) -> None:
        if result.outcome == "COMMITTED":
            try:
                await workflow.execute_local_activity_method(CoreBankingActivities.commit_hold, hold, **CBS_CALL)
            except LOCAL_ACTIVITY_FAILURES:
                await self._end(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED)
            await self._end(S.COMPLETED)
        await self._release(hold)
        if result.outcome == "ABORTED":
            await self._end(S.ABORTED, ErrorCode.TRANSFER_ABORTED)
        failure = result.failure or SdkFailure(http_status=500)
        if failure.fspiop_error_code == "3208":
            await self._end(S.ABORTED, ErrorCode.TRANSFER_NOT_FOUND, fspiop_error_code="3208")
        await self._end_with_sdk_failure(failure)

    # -- updates and queries: the CBS decides, or waits for news -----------------------------------

    @workflow.update
    async def accept_party(self, decision: AcceptanceDecision) -> TransferView:
        self._party_decision = decision.accept_party
        await self._wait_for_report(decision.wait_s, leaving=S.WAITING_FOR_PARTY_ACCEPTANCE)
        return self._published

    @accept_party.validator
    def _party_awaits_decision(self, decision: AcceptanceDecision) -> None:
        if decision.accept_party is None or decision.accept_quote is not None:
            raise ValueError("send exactly one of acceptParty or acceptQuote")
        if self._published.current_state != S.WAITING_FOR_PARTY_ACCEPTANCE or self._party_decision is not None:
            raise ValueError(f"no party awaits acceptance (state {self._published.current_state})")

    @workflow.update
    async def accept_quote(self, decision: AcceptanceDecision) -> TransferView:
        self._quote_decision = decision.accept_quote
        await self._wait_for_report(decision.wait_s, leaving=S.WAITING_FOR_QUOTE_ACCEPTANCE)
        return self._published

    @accept_quote.validator
    def _quote_awaits_decision(self, decision: AcceptanceDecision) -> None:
        if decision.accept_quote is None or decision.accept_party is not None:
            raise ValueError("send exactly one of acceptParty or acceptQuote")
        if self._published.current_state != S.WAITING_FOR_QUOTE_ACCEPTANCE or self._quote_decision is not None:
            raise ValueError(f"no quote awaits acceptance (state {self._published.current_state})")

    @workflow.update
    async def wait_for_report(self, request: WaitRequest) -> TransferView:
        """Answers once the transfer needs the CBS or is final, or after `wait_s`, with what is saved."""
        await self._wait_for_report(request.wait_s)
        return self._published

    @workflow.query
    def view(self) -> TransferView:
        return self._published

    # -- helpers -----------------------------------------------------------------------------------

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

    async def _call_sdk(self, activity: Callable[[Any, ArgT], Awaitable[ResultT]], argument: ArgT) -> ResultT:
        """An SDK call before the money step: retried a few times, then the transfer ends `sdk_unavailable`."""
        try:
            return await workflow.execute_local_activity_method(activity, argument, **SDK_CALL)
        except LOCAL_ACTIVITY_FAILURES:
            await self._end(S.ERROR_OCCURRED, ErrorCode.SDK_UNAVAILABLE)
            raise

    async def _decline(self, sdk_ref: SdkTransferRef) -> None:
        """Best effort: an SDK transfer we never accept lapses by itself; nothing was sent to the switch."""
        try:
            await workflow.execute_local_activity_method(
                PaymentManagerActivities.send_quote_decline, sdk_ref, **SDK_CALL
            )
        except LOCAL_ACTIVITY_FAILURES:
            workflow.logger.warning("could not tell the SDK that the quote is declined")

    async def _release(self, hold: HoldRef) -> None:
        await workflow.execute_local_activity_method(CoreBankingActivities.release_hold, hold, **CBS_CALL)

    async def _end_with_sdk_failure(self, failure: SdkFailure) -> None:
        code = from_fspiop(failure.fspiop_error_code, failure.http_status)
        await self._end(S.ERROR_OCCURRED, code, fspiop_error_code=failure.fspiop_error_code)

    def _search_attributes(self) -> list[SearchAttributeUpdate[Any]]:
        return [SDK_TRANSFER_ID.value_set(self._view.sdk_transfer_id)] if self._view.sdk_transfer_id else []
