"""What one `mojaflow cbs-check` run works with: the test account, its balances as the CBS shows them, the keys the
run makes, and every hold and reservation it opened (released again at the end)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mojaflow.cbs_probe import Answer, Probe, Report, judge_refusal

__all__ = ["CREDIT", "HOLD", "Balances", "Kind", "Session", "Target", "wire"]


def wire(amount: Decimal) -> str:
    """An amount as the contract's requests take it, without exponent or trailing zeros ("1", "10.5")."""
    text = format(amount.normalize(), "f")
    return text


@dataclass(frozen=True)
class Kind:
    """Holds (payer side) and credit reservations (payee side) follow one pattern; this names each one's parts."""

    name: str
    create: str  # operationIds
    get: str
    commit: str
    release: str
    mojaflow: tuple[str, str, str]  # the worker's names of create, commit, release (activities.core_banking)
    key_field: str
    id_field: str
    open_status: str
    column: str  # the account's field the open entry shows in
    commit_sign: int  # the balance's move on commit
    not_found: str
    released: str
    committed: str
    currency_refusal: str  # the refusal of a currency the account does not hold


HOLD = Kind(
    "hold",
    "createHold",
    "getHold",
    "commitHold",
    "releaseHold",
    ("create_hold", "commit_hold", "release_hold"),
    "holdKey",
    "holdId",
    "HELD",
    "held",
    -1,
    "hold_not_found",
    "hold_released",
    "hold_committed",
    "currency_mismatch",
)
CREDIT = Kind(
    "credit",
    "reserveCredit",
    "getCredit",
    "commitCredit",
    "releaseCredit",
    ("reserve_credit", "commit_credit", "release_credit"),
    "reservationKey",
    "reservationId",
    "RESERVED",
    "pendingCredits",
    1,
    "reservation_not_found",
    "reservation_released",
    "reservation_committed",
    "unsupported_currency",
)


@dataclass(frozen=True)
class Balances:
    balance: Decimal
    held: Decimal
    pending_credits: Decimal

    def get(self, column: str) -> Decimal:
        return {"balance": self.balance, "held": self.held, "pendingCredits": self.pending_credits}[column]

    def moved(self, before: Balances) -> str:
        """What changed since `before` ("held +1.00, balance -1.00"), or "" when nothing did."""
        moves = [
            f"{column} {self.get(column) - before.get(column):+.2f}"
            for column in ("balance", "held", "pendingCredits")
            if self.get(column) != before.get(column)
        ]
        return ", ".join(moves)


@dataclass
class Target:
    """The test account the run may hold, debit and credit, and the amount it uses."""

    account_id: str
    currency: str
    amount: Decimal
    run_id: str
    commit: bool
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    probe: Probe
    report: Report
    target: Target
    opened: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, id) → last status seen
    unanswered: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, key) → body sent
    debited: bool = False  # a hold was committed: the credit's commit may balance it
    unreadable: int = 0  # reads of the account that gave no balances (its moves unseen then)

    def key(self, label: str) -> str:
        """A key no one else uses, marked as this check's: `mojaflow-cbs-check-<run>-<label>`."""
        return f"mojaflow-cbs-check-{self.target.run_id}-{label}"

    def body(self, kind: Kind, key: str, amount: str | None = None, currency: str | None = None) -> dict[str, Any]:
        return {
            kind.key_field: key,
            "accountId": self.target.account_id,
            "amount": amount or wire(self.target.amount),
            "currency": currency or self.target.currency,
        }

    async def balances(self) -> Balances | None:
        answer = await self.probe.call("getAccount", {"accountId": self.target.account_id})
        try:
            return Balances(
                Decimal(answer.field("balance")), Decimal(answer.field("held")), Decimal(answer.field("pendingCredits"))
            )
        except (TypeError, ArithmeticError):
            self.unreadable += 1
            return None

    def track(self, kind: Kind, answer: Answer, sent: dict[str, Any] | None = None) -> str | None:
        """Remember what the CBS opened (to release it at the end); the id, if the answer has one."""
        entry_id = answer.field(kind.id_field)
        if answer.ok and isinstance(entry_id, str) and entry_id:
            status = answer.field("status")
            self.opened[(kind.name, entry_id)] = status if isinstance(status, str) else kind.open_status
            return entry_id
        if answer.status is None and sent is not None:  # it may exist: ask again by key at the end
            self.unanswered[(kind.name, sent[kind.key_field])] = sent
        return None

    async def refusal(
        self,
        check: str,
        operation_id: str,
        status: int,
        code: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        mojaflow: str | None = None,
        kind: Kind | None = None,
    ) -> bool:
        """Expect the refusal `status` `code`, and that the account did not move."""
        before = await self.balances()
        answer = await self.probe.call(operation_id, params, body=body, raw=raw, query=query)
        if kind is not None:
            self.track(kind, answer, body if isinstance(body, dict) else None)
        reason = judge_refusal(answer, status, code, mojaflow)
        after = await self.balances()
        if reason is None and before is not None and after is not None and after.moved(before):
            reason = f"HTTP {status} {code}, but the account moved: {after.moved(before)}"
        return self.report.expect(check, reason is None, reason or f"HTTP {status} {code}, nothing moved")

    async def clean_up(self, kinds: tuple[Kind, ...]) -> None:
        """Release what the run left open; one line saying what, and which ids an operator must release by hand."""
        by_name = {kind.name: kind for kind in kinds}
        for (name, _key), body in list(self.unanswered.items()):  # lost answers: the key tells whether it exists
            self.track(by_name[name], await self.probe.call(by_name[name].create, body=body))
        released, stuck = 0, []
        for (name, entry_id), status in list(self.opened.items()):
            kind = by_name[name]
            if status != kind.open_status:
                continue
            answer = await self.probe.call(kind.release, {kind.id_field: entry_id})
            if answer.ok and answer.field("status") == "RELEASED":
                self.opened[(name, entry_id)] = "RELEASED"
                released += 1
            else:
                stuck.append(f"{kind.id_field} {entry_id} ({answer.describe()})")
        self.report.expect(
            "cleanup",
            not stuck,
            f"could not release {'; '.join(stuck)}: release them by hand"
            if stuck
            else f"released the {released} hold(s) and reservation(s) the run left open",
        )
