"""Idempotency keys on the client API: what a key is bound to, and how a decision's retry finds its truth.

A key (`idempotent_request_key`, scoped to client_key, method and route) is bound to a hash of its body for
good: the same key with another body is 422. For `POST /transfers` the key names the transfer; for
`PUT /transfers/{id}` it names the workflow update that carries the decision, so Temporal dedupes a re-sent
decision, and the workflow records each decision with that update's id in the transfer's `decisions`.
"""

from __future__ import annotations

import hashlib
import json

from api.problems import Problem
from mojaflow.models import AcceptanceDecision, TransferState, TransferView

__all__ = ["decision_fingerprint", "decision_taken", "decision_update_id", "key_reused", "request_hash"]


def request_hash(body: object) -> str:
    """A stable hash of a JSON body (keys sorted, no spaces)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def decision_fingerprint(decision: AcceptanceDecision) -> str:
    """What a key is bound to for `PUT /transfers/{id}`: the decision, not the wait preference."""
    return request_hash(decision.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"wait_s"}))


def decision_update_id(client_key: str, key: str) -> str:
    """The workflow update's id for a decision: one per (client_key, key) on a transfer's route (a client_key
    has no `-`, so no two pairs give one id). Temporal answers an update re-sent with this id from the first."""
    return f"decision-{client_key}-{key}"


def decision_taken(view: TransferView, update_id: str, decision: AcceptanceDecision) -> bool:
    """Whether the workflow recorded this decision under this update id, as far as `view` shows."""
    if decision.accept_party is not None:
        expected = (TransferState.WAITING_FOR_PARTY_ACCEPTANCE, decision.accept_party)
    else:
        expected = (TransferState.WAITING_FOR_QUOTE_ACCEPTANCE, bool(decision.accept_quote))
    for taken in view.decisions:
        if taken.update_id == update_id:
            if (taken.state, taken.accepted) != expected:  # keys are bound to their body: not expected, but never
                raise key_reused()  # answer one decision's replay to another
            return True
    return False


def key_reused() -> Problem:
    return Problem(
        422,
        "idempotency_key_reused",
        "Idempotency key reused",
        "idempotent_request_key was already used with a different request body",
    )
