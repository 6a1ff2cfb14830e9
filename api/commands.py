"""What a front door asks the transfer service to do (who asks, what, under which idempotency key), and what it
gets back (`Outcome`).

Each door (`api.transfers`, `api.send_money`) turns its wire format and headers into these; the service knows no
wire format, no header and no route of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.idempotency import IdempotencyKey
from mojaflow.models import TransferOrder, TransferView

__all__ = ["Acceptance", "DecideTransfer", "Outcome", "Requester", "StartTransfer"]


@dataclass(frozen=True)
class Requester:
    """Who asks: the client that owns what the request starts (or may decide it), the actor for the audit log and a
    transfer's `decisions`, and the request's `product` / `payment_channel` (for the webhooks), when it had them."""

    client_key: str
    actor: str
    product: str | None = None
    payment_channel: str | None = None


@dataclass(frozen=True)
class Acceptance:
    """Who accepts the party and the quote. `binding=False`: the bank's policy (MOJAFLOW_AUTO_ACCEPT_*), which a
    caller's `party` / `quote` may only make more manual (unless MOJAFLOW_ALLOW_CALLER_AUTO_ACCEPT). `binding=True`:
    the door decides (Send Money: the party automatically, the quote always the caller's)."""

    party: bool | None = None
    quote: bool | None = None
    binding: bool = False


@dataclass(frozen=True)
class StartTransfer:
    requester: Requester
    order: TransferOrder
    idempotency: IdempotencyKey
    fingerprint: str  # what the key is bound to: the request as the door received it
    acceptance: Acceptance = field(default_factory=Acceptance)


@dataclass(frozen=True)
class DecideTransfer:
    """Accept or reject the party (`accept_party`) or the quote (`accept_quote`): exactly one of the two."""

    requester: Requester
    transfer_id: str  # ours or the SDK's
    idempotency_key: str  # scoped to (client_key, PUT, /transfers/{our transferId}); names the workflow update
    accept_party: bool | None = None
    accept_quote: bool | None = None
    home_transaction_id: str | None = None  # when given, it must be the transfer's


class Outcome:
    """A transfer as a request left it: `settled` once it reached a state worth answering within the wait (the CBS
    must act, or it is final; for a decision: past the state it decided), `replayed` for a request made before."""

    def __init__(self, view: TransferView, *, settled: bool, replayed: bool = False) -> None:
        self.view = view
        self.settled = settled
        self.replayed = replayed
