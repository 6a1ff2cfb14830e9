"""Which transfers an operator may settle by hand (`mojaflow transfers resolve`), with which outcome, and the
messages that carry it to the workflows. Pure rules: the CLI, the API and the workflows' validators share them.

What each state means for the money, as a payments engineer reads it:

* `RECONCILING` (running): the switch's outcome is unknown to us; the payer's hold (outbound) or the payee's
  reservation (inbound) is open. The hub knows: `COMMITTED` commits it, `ABORTED` releases it. The workflow asks
  the switch once more first: a final answer from the switch wins over the operator's word.
* `SETTLING` (running): the switch committed (proven), the CBS is down, the commit is being retried. Only
  `COMMITTED` makes sense (recorded; the workflow goes on committing, once). `ABORTED` would release a hold whose
  money already left through the switch: refused.
* `ERROR_OCCURRED` `settlement_failed` (final): the switch committed, the CBS refused the commit. `COMMITTED` asks
  the CBS to commit again (after the bank fixed what made it refuse); `ABORTED` is refused for the same reason as
  in SETTLING: the money left.
* `ERROR_OCCURRED` `release_failed` (final): we had proof no money moved, the CBS refused the release. The hub may
  say `ABORTED` (release again) or, against our proof, `COMMITTED` (commit it): both allowed.
* Every other state needs no settlement by hand: in progress before the money step (it ends by itself, or
  `temporal workflow cancel`), or final with its hold settled (a `fulfilment_unverified` transfer was debited; if
  the hub says otherwise, that is a refund at the CBS, not a release).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from mojaflow.codes import ErrorCode
from mojaflow.models import FINAL_STATES, Direction, Resolution, TransferState, TransferView

__all__ = [
    "REASON_MAX",
    "RESOLVABLE_CODES",
    "RUNNING_STATES",
    "Outcome",
    "ResolutionRequest",
    "ResolutionResult",
    "ResolveInput",
    "final_state_after",
    "refusal",
    "resolution_record",
    "resolution_workflow_id",
]

S = TransferState
Outcome = Literal["COMMITTED", "ABORTED"]
REASON_MAX = 150  # the audit log keeps 200 characters: the reason with its prefix must fit
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# The final "needs a person" codes that a resolution settles, and the outcomes each allows.
RESOLVABLE_CODES: dict[str, frozenset[str]] = {
    ErrorCode.SETTLEMENT_FAILED.value: frozenset({"COMMITTED"}),
    ErrorCode.RELEASE_FAILED.value: frozenset({"COMMITTED", "ABORTED"}),
}
RUNNING_STATES = frozenset({S.RECONCILING, S.SETTLING})  # resolved by the transfer's own workflow
_SWITCH_COMMITTED = "the switch committed this transfer, so its money left: only --committed settles it"


def _reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must say why (what the hub said, a ticket): it is kept in the audit trail")
    if _CONTROL.search(value):
        raise ValueError("must not contain control or format characters")
    return value


Reason = Annotated[str, Field(max_length=REASON_MAX), AfterValidator(_reason)]


class ResolveInput(BaseModel):
    """The running workflows' `resolve` update: the hub's outcome, why, and who (from the operator's key)."""

    outcome: Outcome
    reason: Reason
    actor: str


class ResolutionRequest(ResolveInput):
    """The input of `ResolutionWorkflow` (id `resolve-{transferId}`): a final transfer to settle at the CBS."""

    transfer_id: str


class ResolutionResult(BaseModel):
    """What `ResolutionWorkflow` did: `resolved` (the CBS settled the hold, the new state is saved with its event),
    `refused` (the transfer is not resolvable as asked; nothing done) or `cbs_refused` (the CBS refused: the
    transfer is unchanged). No personal data: the CLI prints it."""

    status: Literal["resolved", "refused", "cbs_refused"]
    detail: str | None = None
    state: TransferState | None = None
    hold_id: str | None = None


def resolution_workflow_id(transfer_id: str) -> str:
    """One resolution of a final transfer at a time (a closed one's id is reused: the workflow itself refuses a
    transfer already resolved)."""
    return f"resolve-{transfer_id}"


def refusal(view: TransferView, outcome: str) -> str | None:
    """Why `view` cannot be resolved with `outcome`, or None if it can: RECONCILING and SETTLING by the transfer's
    own workflow (`resolve` update), a final one by `ResolutionWorkflow`."""
    state, error = view.current_state, view.last_error
    code = error.code if error else None
    earlier = view.resolution
    # A resolution taken while the workflow ran may still end ERROR_OCCURRED (the CBS refused the commit): that one
    # is settled again through ResolutionWorkflow; any other is the transfer's last word.
    if earlier is not None and not (state == S.ERROR_OCCURRED and earlier.resolved_from not in FINAL_STATES):
        return f"already resolved {earlier.outcome} by {earlier.actor} at {earlier.resolved_at:%Y-%m-%dT%H:%M:%SZ}"
    if state == S.RECONCILING:
        return None
    if state == S.SETTLING:
        return None if outcome == "COMMITTED" else f"SETTLING: {_SWITCH_COMMITTED}"
    if state == S.ERROR_OCCURRED and code in RESOLVABLE_CODES:
        if outcome not in RESOLVABLE_CODES[code]:
            return f"{code}: {_SWITCH_COMMITTED}"
        if not view.hold_id:
            return f"{code} without a hold at the CBS (the SDK ran on by itself): debit the payer at the CBS by hand"
        return None
    what = f"{state.value}" + (f" ({code})" if code else "")
    return f"{what} needs no settlement by hand: only RECONCILING, SETTLING, settlement_failed and release_failed do"


def final_state_after(direction: Direction, outcome: str) -> TransferState:
    """The state a resolution leaves a transfer in."""
    if outcome == "ABORTED":
        return S.ABORTED
    return S.COMPLETED if direction is Direction.OUTBOUND else S.COMMITTED


def resolution_record(request: ResolveInput, resolved_from: TransferState, now: datetime) -> Resolution:
    """What the transfer keeps of the resolution (saved with its next state)."""
    return Resolution(outcome=request.outcome, reason=request.reason, actor=request.actor, resolved_at=now,
                      resolved_from=resolved_from)  # fmt: skip
