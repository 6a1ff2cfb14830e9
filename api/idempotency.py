"""Idempotency, one component for every front door: what a key is, each door's rule, and what it is bound to.

A key lives in a scope (client_key, method, route) and is bound to a fingerprint of its request for good: the
same key with another request raises `IdempotencyKeyReused`, whatever happened in between. Each door's rule:

* `POST /transfers`: the `idempotent_request_key` header (required there), route `/transfers`.
* `POST /send-money`, `POST /merchant-payment` with the Money Movement headers: their `idempotent_request_key`,
  route the door's own. Without them: the body's `homeTransactionId` (`home.` + a hash of it, a form no header
  key can take), in one scope for both doors, so one homeTransactionId makes one transfer, never two.
* Decisions (`PUT /transfers/{id}`, `PUT /send-money/{id}`, `PUT /merchant-payment/{id}`): route
  `/transfers/{our transferId}` whichever door and id; the header key, or without headers `quote.accept` /
  `quote.decline`. The key also names the workflow update that carries the decision, so Temporal dedupes a
  re-sent decision, and the workflow records each decision with that update's id in the transfer's `decisions`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from api.errors import IdempotencyKeyReused
from mojaflow.database import Database
from mojaflow.keys import KeyRing
from mojaflow.models import TransferState, TransferView

__all__ = [
    "Claim",
    "Idempotency",
    "IdempotencyKey",
    "SEND_MONEY_SCOPE",
    "decision_fingerprint",
    "decision_key",
    "decision_route",
    "decision_taken",
    "decision_update_id",
    "keyed_fingerprint",
    "request_hash",
    "send_money_key",
    "transfers_key",
]

SEND_MONEY_SCOPE = "/send-money"  # the one scope of header-less Send Money requests (P2P and P2B alike)


@dataclass(frozen=True)
class IdempotencyKey:
    """A key in its scope."""

    client_key: str
    method: str
    route: str
    key: str


@dataclass(frozen=True)
class Claim:
    created: bool  # False: the key was claimed before, with the same fingerprint (a replay)
    transfer_id: str  # the transfer the key names


def request_hash(body: object) -> str:
    """A stable hash of a JSON body (keys sorted, no spaces)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def transfers_key(client_key: str, idempotent_request_key: str) -> IdempotencyKey:
    return IdempotencyKey(client_key, "POST", "/transfers", idempotent_request_key)


def send_money_key(
    client_key: str, route: str, idempotent_request_key: str | None, home_transaction_id: str | None
) -> IdempotencyKey | None:
    """The header key in the door's own scope; else the homeTransactionId in the shared one; None: neither, so
    nothing could make a retry safe."""
    if idempotent_request_key is not None:
        return IdempotencyKey(client_key, "POST", route, idempotent_request_key)
    if home_transaction_id:
        digest = hashlib.sha256(home_transaction_id.encode()).hexdigest()[:40]
        return IdempotencyKey(client_key, "POST", SEND_MONEY_SCOPE, f"home.{digest}")
    return None


def decision_route(transfer_id: str) -> str:
    return f"/transfers/{transfer_id}"


def decision_key(idempotent_request_key: str | None, accept_quote: bool) -> str:
    """A decision's key: the header's, or (Send Money without headers) one per decision a transfer can take."""
    if idempotent_request_key is not None:
        return idempotent_request_key
    return "quote.accept" if accept_quote else "quote.decline"


def decision_fingerprint(accept_party: bool | None, accept_quote: bool | None) -> str:
    """What a decision's key is bound to: the decision, nothing else (not the wait, not the door)."""
    decision = {"acceptParty": accept_party, "acceptQuote": accept_quote}
    return request_hash({name: value for name, value in decision.items() if value is not None})


def decision_update_id(client_key: str, key: str) -> str:
    """The workflow update's id for a decision: one per (client_key, key) on a transfer's route (a client_key
    has no `-`, so no two pairs give one id). Temporal answers an update re-sent with this id from the first."""
    return f"decision-{client_key}-{key}"


def decision_taken(view: TransferView, update_id: str, accept_party: bool | None, accept_quote: bool | None) -> bool:
    """Whether the workflow recorded this decision under this update id, as far as `view` shows."""
    if accept_party is not None:
        expected = (TransferState.WAITING_FOR_PARTY_ACCEPTANCE, accept_party)
    else:
        expected = (TransferState.WAITING_FOR_QUOTE_ACCEPTANCE, bool(accept_quote))
    for taken in view.decisions:
        if taken.update_id == update_id:
            if (taken.state, taken.accepted) != expected:  # keys are bound to their body: not expected, but never
                raise IdempotencyKeyReused()  # answer one decision's replay to another
            return True
    return False


class Idempotency:
    """Claims keys in our database (kept beyond Temporal's retention): concurrent claims, exactly one wins.

    A fingerprint is stored only as an HMAC under the party-hash ring's first key: a request's body holds party
    ids, and a plain hash of it could be checked against guesses by whoever reads the database. A replay matches
    under any key of the ring (one rotated in since the claim), or as earlier versions stored it (unkeyed)."""

    def __init__(self, database: Database, ring: KeyRing) -> None:
        self._db = database
        self._ring = ring

    async def claim(self, key: IdempotencyKey, fingerprint: str, transfer_id: str) -> Claim:
        """Bind `key` to `fingerprint` and `transfer_id`, or find what it is bound to; raises
        `IdempotencyKeyReused` when that is another fingerprint."""
        claim = await self._db.claim_idempotency_key(
            client_key=key.client_key,
            method=key.method,
            route=key.route,
            key=key.key,
            request_hash=keyed_fingerprint(self._ring.primary, fingerprint),
            transfer_id=transfer_id,
        )
        if not claim.created and not self._same_request(claim.request_hash, fingerprint):
            raise IdempotencyKeyReused()
        return Claim(created=claim.created, transfer_id=claim.transfer_id)

    def _same_request(self, stored: str, fingerprint: str) -> bool:
        candidates = [fingerprint, *(keyed_fingerprint(key, fingerprint) for key in self._ring.keys)]
        return any(hmac.compare_digest(stored, candidate) for candidate in candidates)


def keyed_fingerprint(key: bytes, fingerprint: str) -> str:
    """What is stored of a request's fingerprint: its HMAC-SHA256 under `key` (64 hex digits, as the plain hash)."""
    return hmac.new(key, fingerprint.encode(), hashlib.sha256).hexdigest()
