"""Which transfer an operator may resolve, and how (mojaflow/resolution.py): every state and "needs a person"
code against both outcomes, as the README's table in "Operations" says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mojaflow.codes import ErrorCode, transfer_error
from mojaflow.models import Direction, Resolution, TransferState, TransferView
from mojaflow.resolution import ResolveInput, final_state_after, refusal

S = TransferState


def view(state: TransferState, code: ErrorCode | None = None, *, hold_id: str | None = "hold-1") -> TransferView:
    return TransferView(
        transfer_id="t1", direction=Direction.OUTBOUND, current_state=state, currency="USD", amount="10",
        hold_id=hold_id, last_error=transfer_error(code) if code else None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "code", "committed", "aborted"),
    [
        (S.RECONCILING, None, True, True),
        (S.RECONCILING, ErrorCode.FULFILMENT_INVALID, True, True),
        (S.SETTLING, None, True, False),
        (S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED, True, False),
        (S.ERROR_OCCURRED, ErrorCode.RELEASE_FAILED, True, True),
        (S.ERROR_OCCURRED, ErrorCode.PAYEE_REJECTED, False, False),
        (S.COMPLETED, ErrorCode.FULFILMENT_UNVERIFIED, False, False),
        (S.COMPLETED, None, False, False),
        (S.ABORTED, ErrorCode.TRANSFER_ABORTED, False, False),
        (S.WAITING_FOR_QUOTE_ACCEPTANCE, None, False, False),
        (S.TRANSFERRING, None, False, False),
        (S.RESERVED, None, False, False),
    ],
)
def test_which_outcome_each_state_takes(
    state: TransferState, code: ErrorCode | None, committed: bool, aborted: bool
) -> None:
    transfer = view(state, code)

    assert (refusal(transfer, "COMMITTED") is None, refusal(transfer, "ABORTED") is None) == (committed, aborted)


def test_refusals_say_why() -> None:
    assert "the switch committed" in (refusal(view(S.SETTLING), "ABORTED") or "")
    assert "settlement_failed: the switch committed" in (
        refusal(view(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED), "ABORTED") or ""
    )
    no_hold = refusal(view(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED, hold_id=None), "COMMITTED")
    assert no_hold is not None and "without a hold" in no_hold
    assert "COMPLETED needs no settlement by hand" in (refusal(view(S.COMPLETED), "COMMITTED") or "")


def test_a_resolution_is_taken_once_unless_the_cbs_then_refused_it() -> None:
    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    done = view(S.COMPLETED)
    done.resolution = Resolution(outcome="COMMITTED", reason="r", actor="api_key:abc", resolved_at=at,
                                 resolved_from=S.ERROR_OCCURRED)  # fmt: skip
    assert refusal(done, "COMMITTED") == "already resolved COMMITTED by api_key:abc at 2026-12-03T12:00:00Z"
    # Acknowledged while SETTLING, then the CBS refused the commit: settlement_failed, to be resolved again.
    refused = view(S.ERROR_OCCURRED, ErrorCode.SETTLEMENT_FAILED)
    refused.resolution = done.resolution.model_copy(update={"resolved_from": S.SETTLING})
    assert refusal(refused, "COMMITTED") is None


def test_the_state_a_resolution_leaves() -> None:
    assert final_state_after(Direction.OUTBOUND, "COMMITTED") == S.COMPLETED
    assert final_state_after(Direction.INBOUND, "COMMITTED") == S.COMMITTED
    assert final_state_after(Direction.INBOUND, "ABORTED") == S.ABORTED


@pytest.mark.parametrize(
    ("reason", "message"),
    [("", "must say why"), ("   ", "must say why"), ("x" * 151, "at most 150"), ("a\u202eb", "control or format")],
)
def test_a_reason_is_required_and_plain(reason: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ResolveInput(outcome="COMMITTED", reason=reason, actor="api_key:abc")
