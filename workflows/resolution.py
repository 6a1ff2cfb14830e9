"""`ResolutionWorkflow` (id `resolve-{transferId}`, one run at a time): an operator settles a final transfer that
needs a person (`settlement_failed`, `release_failed`) after checking with the hub.

The story: read the transfer as saved; check it is still resolvable as asked (the CLI checked before starting,
this is the word that counts); commit or release its hold (outbound) or credit reservation (inbound) at the CBS,
through the same idempotent activities the transfer workflows use (by the CBS's id: a retry is a no-op at the
CBS); save the new state with the resolution, which writes its webhook event once (the outbox). A CBS refusal
leaves the transfer as it was, and says so; a later run may try again. A transfer already resolved is refused, so
a run after a resolution changes nothing.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.core_banking import CoreBankingActivities, HoldRef, ReservationRef
    from activities.store import StoreActivities, TransferLookup
    from mojaflow.codes import ErrorCode, transfer_error
    from mojaflow.models import FINAL_STATES, Direction, TransferRecord
    from mojaflow.resolution import (
        ResolutionRequest,
        ResolutionResult,
        final_state_after,
        refusal,
        resolution_record,
    )
    from mojaflow.temporal import MOJAFLOW_STATE, TRANSFER_ID
    from workflows.transfer_state import LOCAL_ACTIVITY_FAILURES, SAVE, SavedTransferState, refusal_code

__all__ = ["ResolutionWorkflow"]

_DETAIL = "an operator's resolution, after checking with the hub"


@workflow.defn
class ResolutionWorkflow(SavedTransferState):
    @workflow.run
    async def run(self, request: ResolutionRequest) -> ResolutionResult:
        saved: TransferRecord | None = await self._durably(
            StoreActivities.load_saved_transfer, TransferLookup(transfer_id=request.transfer_id), local=SAVE
        )
        if saved is None:
            return ResolutionResult(status="refused", detail=f"no transfer {request.transfer_id}")
        view = saved.view
        problem = refusal(view, request.outcome)
        if problem is None and view.current_state not in FINAL_STATES:
            problem = f"{view.current_state.value}: its own workflow settles it (the `resolve` update)"
        if problem is not None:
            return ResolutionResult(status="refused", detail=problem, state=view.current_state, hold_id=view.hold_id)
        try:
            await self._settle_at_cbs(view.direction, view.hold_id or "", request.outcome)
        except LOCAL_ACTIVITY_FAILURES as error:
            code = refusal_code(error)
            if code is None:
                raise
            return ResolutionResult(status="cbs_refused", detail=code, state=view.current_state, hold_id=view.hold_id)
        previous = view.current_state
        view.resolution = resolution_record(request, previous, workflow.now())
        view.current_state = final_state_after(view.direction, request.outcome)
        view.last_error = None if request.outcome == "COMMITTED" else transfer_error(ErrorCode.TRANSFER_ABORTED,
                                                                                    detail=_DETAIL)  # fmt: skip
        view.timestamps.finished_at = workflow.now()
        record = saved.model_copy(update={"view": view, "revision": saved.revision + 1, "previous_state": previous})
        await self._durably(StoreActivities.save_transfer, record, local=SAVE)  # its event, once (the outbox)
        workflow.upsert_search_attributes(
            [TRANSFER_ID.value_set(view.transfer_id), MOJAFLOW_STATE.value_set(view.current_state.value)]
        )
        return ResolutionResult(status="resolved", state=view.current_state, hold_id=view.hold_id)

    def _index(self) -> None:
        """Not while a call retries: a resolution's search attributes are set once, with its outcome."""

    async def _settle_at_cbs(self, direction: Direction, hold_id: str, outcome: str) -> None:
        """Commit or release, once at the CBS (the same action twice is a no-op there); unavailability is retried
        without end, a refusal raised."""
        if direction is Direction.OUTBOUND:
            hold = HoldRef(hold_id=hold_id)
            action = CoreBankingActivities.commit_hold if outcome == "COMMITTED" else CoreBankingActivities.release_hold
            await self._durably(action, hold)
            return
        reservation = ReservationRef(reservation_id=hold_id)
        credit = CoreBankingActivities.commit_credit if outcome == "COMMITTED" else CoreBankingActivities.release_credit
        await self._durably(credit, reservation)
