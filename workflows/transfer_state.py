"""What both transfer workflows share: each state is saved to our database before anyone sees it, and a
transfer ends by saving its final state with the reason.

Deterministic: the save is a local activity, the time comes from `workflow.now()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payment_manager import PaymentManagerActivities, SdkTransferRef, SwitchState
    from activities.store import StoreActivities
    from mojaflow.codes import ErrorCode, transfer_error
    from mojaflow.models import (
        FIRST_REVISION,
        REPORTABLE_STATES,
        Resolution,
        TransferRecord,
        TransferState,
        TransferView,
    )
    from mojaflow.resolution import RUNNING_STATES, ResolveInput, refusal, resolution_record
    from mojaflow.temporal import MOJAFLOW_STATE

__all__ = [
    "CBS_CALL",
    "INDEXED_STATES",
    "LOCAL_ACTIVITY_FAILURES",
    "OUTAGE_RETRY",
    "RECONCILE_CALL",
    "SAVE",
    "SavedTransferState",
    "TransferEnded",
    "bounded_locally",
    "refusal_code",
]

# Every CBS call is short and idempotent at the CBS (by key or by id), so it runs as a local activity: no round
# trip through the server, and a re-run after a crash is harmless. Unavailability is retried without end,
# a refusal never.
CBS_CALL = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=60),
        non_retryable_error_types=["CoreBankingRefused"],
    ),
)
# Asking the switch moves nothing; a failed question is just asked again later by the loop.
RECONCILE_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=90), retry_policy=RetryPolicy(maximum_attempts=1)
)
SAVE = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=15),
    schedule_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)),
)
# A local activity that retries for long keeps the workflow task alive, and each heartbeat of that task is a few
# history events: a week of CBS or database outage would reach Temporal's history limit. So a call first runs
# locally for a bounded time, then as a normal activity, whose retries the server keeps out of the history.
# The SDK (temporalio 1.35) does not stop a local activity's retries at its schedule_to_close_timeout (seen: a
# 3 s bound still retried after a minute, the workflow task heartbeating all along), so the local phase is also
# bounded by its number of attempts: as many as the back-off lets start within that time.
LOCAL_FIRST = timedelta(seconds=60)
OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["CoreBankingRefused"],
)


# The states a search needs (README "How an outbound transfer runs"), upserted as `MojaflowState` on entry: where
# a transfer rests (a decision, the switch or the CBS awaited), where its money is in flight, and its end. Each
# upsert is a history event and a visibility write on the server, so the passing states (RESOLVING_PARTY,
# REQUESTING_QUOTE, HOLDING_FUNDS, inbound RECEIVED: one call each) are indexed only when their call outlasts its
# local minute.
INDEXED_STATES = REPORTABLE_STATES | {
    TransferState.TRANSFERRING,
    TransferState.RESERVED,
    TransferState.RECONCILING,
    TransferState.SETTLING,
}

# A failed local activity reaches the workflow as the activity's own ApplicationError; one that timed out, as
# an ActivityError. Catch both around every local activity.
LOCAL_ACTIVITY_FAILURES = (ActivityError, ApplicationError)


class TransferEnded(Exception):
    """Unwinds a workflow's story once its final state is saved."""


class SavedTransferState:
    """Base of the transfer workflows: `_view` is the state being built, `_published` what callers see."""

    _input: Any  # the workflow's input; has `client_key`, `product`, `payment_channel`
    _view: TransferView
    _published: TransferView
    _revision: int
    _switch_saw_prepare: bool = False  # a RESERVED / RECEIVED answer: 3208 no longer proves anything
    _awaiting_switch: bool = False  # in the reconciliation loop: an operator's resolution may end it
    _resolution: Resolution | None = None  # an operator's (`resolve` update), once accepted

    def _search_attributes(self) -> list[SearchAttributeUpdate[Any]]:
        """The search attributes to keep current besides the state; none by default."""
        return []

    async def _enter(self, state: TransferState) -> None:
        """Save the new state to our database, then show it to callers, and in the search attributes if a search
        needs it."""
        self._view.current_state = state
        self._revision += 1
        first = self._revision == FIRST_REVISION[self._view.direction]  # inbound: its RECEIVED, never saved before
        record = TransferRecord(
            view=self._view,
            revision=self._revision,
            workflow_id=workflow.info().workflow_id,
            client_key=self._input.client_key,
            previous_state=None if first else self._published.current_state,
            product=self._input.product,
            payment_channel=self._input.payment_channel,
        )
        await self._durably(StoreActivities.save_transfer, record, local=SAVE)
        self._published = self._view.model_copy(deep=True)
        if state in INDEXED_STATES:
            self._index()
        workflow.logger.info("transfer state %s", state.value)  # a searchable line per state (none on replay)

    def _index(self) -> None:
        """Upsert the state callers see (saved: never one whose save is still retrying) and the other search
        attributes, unless they already say so: the workflow's info holds them as last set, by the start (the API
        sets RECEIVED), the run this one continues, or an upsert."""
        updates = [MOJAFLOW_STATE.value_set(self._published.current_state.value), *self._search_attributes()]
        current = workflow.info().typed_search_attributes
        if any(current.get(update.key) != update.value for update in updates):
            workflow.upsert_search_attributes(updates)

    async def _durably(
        self,
        activity: Callable[..., Any],
        argument: Any,
        *,
        local: workflow.LocalActivityConfig = CBS_CALL,
        on_outage: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Run an idempotent call until it succeeds or is refused (`CoreBankingRefused` propagates): locally for
        up to a minute, then (after `on_outage`, e.g. entering SETTLING) as a normal activity without end."""
        config: Any = bounded_locally(local, local.get("schedule_to_close_timeout") or LOCAL_FIRST)
        try:
            return await workflow.execute_local_activity_method(activity, argument, **config)
        except LOCAL_ACTIVITY_FAILURES as error:
            if refusal_code(error) is not None:
                raise
        if on_outage is not None:
            await on_outage()
        self._index()  # a passing state that lasts: searchable while the call retries
        return await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=timedelta(seconds=60), retry_policy=OUTAGE_RETRY
        )

    async def _poll_switch(
        self,
        sdk_transfer_id: str,
        give_up_not_found_at: datetime,
        interval: timedelta,
        *,
        answered_otherwise: Callable[[], bool] = lambda: False,
        proves_commit: Callable[[SwitchState], bool] = lambda answer: True,
    ) -> tuple[str | None, timedelta]:
        """Ask the switch (through the SDK's `GET /transfers/{id}`) with a growing pause until it says
        COMMITTED (as `proves_commit` judges it) or ABORTED, or still does not know the transfer (3208) after
        `give_up_not_found_at`: then that state, or "NOT_FOUND". A 3208 counts only if the switch was never
        seen holding the transfer (RESERVED / RECEIVED): once seen, only a final answer ends the loop.
        None when `answered_otherwise()` became true (an inbound notification), or when
        `reconcile_checks_per_run` questions brought nothing final: the caller then continues as new, so a
        silent switch cannot grow one history to Temporal's limit. Also returns the next pause."""
        self._awaiting_switch = True
        try:
            return await self._ask_switch_repeatedly(sdk_transfer_id, give_up_not_found_at, interval,
                                                     answered_otherwise, proves_commit)  # fmt: skip
        finally:
            self._awaiting_switch = False

    async def _ask_switch_repeatedly(
        self,
        sdk_transfer_id: str,
        give_up_not_found_at: datetime,
        interval: timedelta,
        answered_otherwise: Callable[[], bool],
        proves_commit: Callable[[SwitchState], bool],
    ) -> tuple[str | None, timedelta]:
        """`_poll_switch`'s loop. An operator's resolution ends it (None) only after one more question to the switch
        found nothing final: the switch's own final answer wins over the operator's word."""
        policy = self._input.policy
        ref = SdkTransferRef(sdk_transfer_id=sdk_transfer_id)
        asked = 0
        while asked < policy.reconcile_checks_per_run or self._resolution is not None:  # a resolution: ask once more
            asked += 1
            try:
                answer = await workflow.execute_activity_method(
                    PaymentManagerActivities.get_switch_state, ref, **RECONCILE_CALL
                )
            except ActivityError:
                answer = SwitchState(state="UNKNOWN")
            if answered_otherwise():
                return None, interval
            if answer.state in ("RESERVED", "RECEIVED"):
                self._switch_saw_prepare = True
            if answer.state == "COMMITTED" and proves_commit(answer):
                return "COMMITTED", interval
            if answer.state == "ABORTED":
                return "ABORTED", interval
            if answer.state == "NOT_FOUND" and workflow.now() >= give_up_not_found_at and not self._switch_saw_prepare:
                return "NOT_FOUND", interval
            if self._resolution is not None:
                return None, interval
            try:
                await workflow.wait_condition(
                    lambda: answered_otherwise() or self._resolution is not None, timeout=interval
                )
            except TimeoutError:
                pass
            interval = min(interval * 2, timedelta(seconds=policy.reconcile_max_interval_s))
        return None, interval

    # -- an operator's resolution (`mojaflow transfers resolve`, README "Operations") ----------------

    @workflow.update
    def resolve(self, request: ResolveInput) -> TransferView:
        """An operator settles a RECONCILING or SETTLING transfer after checking with the hub (README
        "Operations"): answers at once, with the state as it stands; the transfer's next saves show the rest. Kept
        in the view (saved with the next state); the reconciliation loop ends on it."""
        self._resolution = resolution_record(request, self._view.current_state, workflow.now())
        self._view.resolution = self._resolution
        return self._published

    @resolve.validator
    def _resolvable(self, request: ResolveInput) -> None:
        """RECONCILING only while the switch is still being asked (not once its answer is in and the hold is being
        settled), SETTLING only with COMMITTED, once (mojaflow/resolution.py)."""
        if self._resolution is not None:
            raise ValueError(f"already resolved {self._resolution.outcome} by {self._resolution.actor}")
        if self._view.current_state not in RUNNING_STATES:
            raise ValueError(f"{self._view.current_state.value}: only RECONCILING or SETTLING is resolved this way")
        if self._view.current_state == TransferState.RECONCILING and not self._awaiting_switch:
            raise ValueError("RECONCILING, but the switch's answer is in: the transfer is being settled")
        problem = refusal(self._view, request.outcome)
        if problem is not None:
            raise ValueError(problem)

    def _resolution_detail(self) -> str | None:
        return "an operator's resolution, after checking with the hub" if self._resolution is not None else None

    async def _end(
        self,
        state: TransferState,
        code: ErrorCode | None = None,
        *,
        fspiop_error_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Save the final state (with the reason, if any) and unwind with `TransferEnded`."""
        if code is not None:
            self._view.last_error = transfer_error(code, fspiop_error_code, detail)
        self._view.timestamps.finished_at = workflow.now()
        await self._enter(state)
        raise TransferEnded


def bounded_locally(config: workflow.LocalActivityConfig, budget: timedelta) -> workflow.LocalActivityConfig:
    """`config` retried for `budget` at most: its schedule_to_close_timeout, and as many attempts as start within
    it (the SDK does not end a local activity's retries at schedule_to_close: see LOCAL_FIRST)."""
    policy = config.get("retry_policy") or RetryPolicy()
    bounded = replace(policy, maximum_attempts=_attempts_within(policy, budget))
    return cast(workflow.LocalActivityConfig, {**config, "schedule_to_close_timeout": budget, "retry_policy": bounded})


def _attempts_within(policy: RetryPolicy, budget: timedelta) -> int:
    """How many attempts of `policy` start within `budget` (the first at once, then after each back-off)."""
    attempts, started_at, interval = 1, timedelta(0), policy.initial_interval
    ceiling = policy.maximum_interval or budget
    while timedelta(0) < interval and started_at + interval <= budget:
        started_at += interval
        attempts += 1
        interval = min(interval * policy.backoff_coefficient, ceiling)
    if policy.maximum_attempts:
        return min(attempts, policy.maximum_attempts)
    return attempts


def refusal_code(error: ActivityError | ApplicationError) -> str | None:
    """The CBS contract's refusal code carried by a failed activity, or None if it was not a refusal."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError) and cause.type == "CoreBankingRefused":
        return str(cause.details[0]) if cause.details else cause.message
    return None
