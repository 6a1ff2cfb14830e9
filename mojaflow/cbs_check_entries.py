"""`mojaflow cbs-check`: holds and credit reservations, the operations that move money.

For each kind: create, replay (the same key and body: the same entry, money held once), concurrent duplicates (one
entry), the same key with another body (`idempotency_conflict`), read, release (and its repeat, and the refused
commit after it), a replay after the release, commit (and its repeat, and the refused release after it), unknown ids,
and the refusals the contract lists, each observed on the account's balances: a refusal moves nothing.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from mojaflow.cbs_check_listing import check_listed, check_listing, has_listing
from mojaflow.cbs_check_session import HOLD, Kind, Session, wire
from mojaflow.cbs_probe import Answer, judge_success

__all__ = ["check_entries"]

_CONCURRENT = 5


async def check_entries(session: Session, kind: Kind) -> None:
    first = await _create(session, kind)
    if first is None:
        session.report.skip(f"{kind.name}.*", f"the lifecycle checks need a {kind.name} ({kind.name}.create failed)")
    else:
        second = await _concurrent(session, kind)
        await _conflict(session, kind)
        await _read(session, kind, first)
        listing = kind is HOLD and has_listing(session)  # GET /holds?status=HELD, when the contract has it
        if listing:
            await check_listed(session, first, session.key("hold-1"), listed=True)
        await _finish(session, kind, first, "release")
        if listing:
            await check_listed(session, first, session.key("hold-1"), listed=False)
        await _replay_after_release(session, kind, first)
        if second is None:
            session.report.skip(f"{kind.name}.commit", f"needs the {kind.name} of {kind.name}.concurrent")
        elif not session.target.commit:
            session.report.skip(f"{kind.name}.commit", "--no-commit: nothing debited or credited")
        elif kind is not HOLD and not session.debited:
            # A credit alone would leave the test account richer than it was: it only balances a committed hold.
            session.report.skip(f"{kind.name}.commit", "the hold was not committed, so no credit is either")
        else:
            await _finish(session, kind, second, "commit")
    await _unknown_ids(session, kind)
    await _refusals(session, kind)
    await _invalid_requests(session, kind)
    if kind is HOLD and has_listing(session):
        await check_listing(session)


async def _create(session: Session, kind: Kind) -> str | None:
    """A new entry (201), then the same key and body again, the amount written otherwise (200, the same entry)."""
    report, target = session.report, session.target
    before = await session.balances()
    body = session.body(kind, session.key(f"{kind.name}-1"))
    answer = await session.probe.call(kind.create, body=body)
    entry_id = session.track(kind, answer, body)
    after = await session.balances()
    problems = _entry_problems(session, kind, answer, kind.open_status, (201,))
    if not problems and before is not None and after is not None:
        moved = after.moved(before)
        expected = f"{kind.column} {target.amount:+.2f}"
        if moved != expected:
            problems.append(f"the account moved by [{moved or 'nothing'}], expected [{expected}]")
    if not report.expect(f"{kind.name}.create", not problems, "; ".join(problems) or f"201 {kind.open_status}"):
        return None
    assert entry_id is not None
    replay_body = {**body, "amount": f"{target.amount:.2f}"}  # "1" and "1.00" are one amount: compared as numbers
    replay = await session.probe.call(kind.create, body=replay_body)
    session.track(kind, replay, replay_body)
    again = await session.balances()
    problems = _entry_problems(session, kind, replay, kind.open_status, (200,))
    if replay.field(kind.id_field) not in (None, entry_id):
        problems.append(f"another {kind.id_field}: a second {kind.name}")
    if after is not None and again is not None and again.moved(after):
        problems.append(f"money moved again: {again.moved(after)}")
    report.expect(
        f"{kind.name}.replay",
        not problems,
        "; ".join(problems)
        or f"the same {kind.key_field} and body again: 200, the same {kind.id_field}, nothing moved",
    )
    return entry_id


async def _concurrent(session: Session, kind: Kind) -> str | None:
    """`_CONCURRENT` requests with one new key at once: one entry, one 201, money moved once."""
    before = await session.balances()
    body = session.body(kind, session.key(f"{kind.name}-2"))
    answers = await asyncio.gather(*(session.probe.call(kind.create, body=body) for _ in range(_CONCURRENT)))
    ids = {session.track(kind, answer, body) for answer in answers}
    after = await session.balances()
    statuses = sorted(answer.describe() for answer in answers)
    problems = []
    if None in ids or len(ids) != 1:
        problems.append(f"{len(ids - {None})} distinct {kind.id_field}s from {', '.join(statuses)}")
    elif [a.status for a in answers].count(201) != 1:
        problems.append(f"expected one HTTP 201 and the rest 200, got {', '.join(statuses)}")
    expected = f"{kind.column} {session.target.amount:+.2f}"
    if before is not None and after is not None and after.moved(before) != expected:
        problems.append(f"the account moved by [{after.moved(before) or 'nothing'}], expected [{expected}] once")
    session.report.expect(
        f"{kind.name}.concurrent",
        not problems,
        "; ".join(problems) or f"{_CONCURRENT} at once with one key: one {kind.name}, one 201, money moved once",
    )
    return next(iter(ids)) if len(ids) == 1 and None not in ids else None


async def _conflict(session: Session, kind: Kind) -> None:
    body = session.body(kind, session.key(f"{kind.name}-1"), wire(session.target.amount + 1))
    await session.refusal(
        f"{kind.name}.idempotency-conflict",
        kind.create,
        409,
        "idempotency_conflict",
        body=body,
        mojaflow=kind.mojaflow[0],
        kind=kind,
    )


async def _read(session: Session, kind: Kind, entry_id: str) -> None:
    answer = await session.probe.call(kind.get, {kind.id_field: entry_id})
    problems = _entry_problems(session, kind, answer, kind.open_status, (200,))
    if answer.field(kind.id_field) not in (None, entry_id):
        problems.append(f"another {kind.id_field}")
    session.report.expect(f"{kind.name}.get", not problems, "; ".join(problems) or f"200 {kind.open_status}")


async def _finish(session: Session, kind: Kind, entry_id: str, action: str) -> None:
    """`action` (release or commit) moves the money once; repeated, it answers the same and moves nothing; the
    opposite action afterwards is refused."""
    amount = session.target.amount
    if action == "release":
        operation, mojaflow, final, moves = kind.release, kind.mojaflow[2], "RELEASED", ""
        opposite, opposite_mojaflow, opposite_code = kind.commit, kind.mojaflow[1], kind.released
    else:
        operation, mojaflow, final = kind.commit, kind.mojaflow[1], "COMMITTED"
        moves = f"balance {kind.commit_sign * amount:+.2f}, "
        opposite, opposite_mojaflow, opposite_code = kind.release, kind.mojaflow[2], kind.committed
    moves += f"{kind.column} {-amount:+.2f}"
    for check, expected in ((f"{kind.name}.{action}", moves), (f"{kind.name}.{action}.repeat", "")):
        before = await session.balances()
        answer = await session.probe.call(operation, {kind.id_field: entry_id})
        session.track(kind, answer)
        session.debited = session.debited or (kind is HOLD and action == "commit" and answer.ok)
        after = await session.balances()
        problems = _entry_problems(session, kind, answer, final, (200,), mojaflow)
        if not problems and before is not None and after is not None and after.moved(before) != expected:
            moved = after.moved(before) or "nothing"
            problems.append(f"the account moved by [{moved}], expected [{expected or 'nothing'}]")
        good = f"200 {final}, the account moved by [{expected or 'nothing'}]"
        session.report.expect(check, not problems, "; ".join(problems) or good)
    await session.refusal(
        f"{kind.name}.{'commit' if action == 'release' else 'release'}-after-{action}",
        opposite,
        409,
        opposite_code,
        params={kind.id_field: entry_id},
        mojaflow=opposite_mojaflow,
    )


async def _replay_after_release(session: Session, kind: Kind, entry_id: str) -> None:
    """The contract: a replay answers the original entry "whatever its status now", and opens nothing new."""
    before = await session.balances()
    answer = await session.probe.call(kind.create, body=session.body(kind, session.key(f"{kind.name}-1")))
    session.track(kind, answer)
    after = await session.balances()
    problems = _entry_problems(session, kind, answer, "RELEASED", (200,))
    if answer.field(kind.id_field) not in (None, entry_id):
        problems.append(f"another {kind.id_field}: a new {kind.name} for a used key")
    if before is not None and after is not None and after.moved(before):
        problems.append(f"money moved: {after.moved(before)}")
    session.report.expect(
        f"{kind.name}.replay-after-release",
        not problems,
        "; ".join(problems) or f"200, the original {kind.name} as RELEASED, nothing moved",
    )


async def _unknown_ids(session: Session, kind: Kind) -> None:
    unknown = {kind.id_field: session.key(f"unknown-{kind.name}")}
    for label, operation, mojaflow in (
        ("get", kind.get, "get_hold" if kind is HOLD else None),
        ("commit", kind.commit, kind.mojaflow[1]),
        ("release", kind.release, kind.mojaflow[2]),
    ):
        await session.refusal(
            f"{kind.name}.not-found.{label}", operation, 404, kind.not_found, params=unknown, mojaflow=mojaflow
        )


async def _refusals(session: Session, kind: Kind) -> None:
    target, create = session.target, kind.create
    await session.refusal(
        f"{kind.name}.{kind.currency_refusal}",
        create,
        409,
        kind.currency_refusal,
        body=session.body(kind, session.key(f"{kind.name}-currency"), currency=_other_currency(target.currency)),
        mojaflow=kind.mojaflow[0],
        kind=kind,
    )
    missing = {**session.body(kind, session.key(f"{kind.name}-no-account")), "accountId": session.key("no-account")}
    await session.refusal(
        f"{kind.name}.account-not-found",
        create,
        404,
        "account_not_found",
        body=missing,
        mojaflow=kind.mojaflow[0],
        kind=kind,
    )
    too_much = await _too_much(session, kind)
    if too_much is None:
        session.report.skip(f"{kind.name}.limit_exceeded", "the account has no limits.maxCreditAmount nor maxBalance")
        return
    code, amount = too_much
    key = session.key(f"{kind.name}-refused")
    if await session.refusal(
        f"{kind.name}.{code}",
        create,
        409,
        code,
        body=session.body(kind, key, wire(amount)),
        mojaflow=kind.mojaflow[0],
        kind=kind,
    ):
        # "A refused request creates nothing, so its key can be retried later."
        answer = await session.probe.call(create, body=session.body(kind, key))
        session.track(kind, answer)
        reason = judge_success(answer, (201,), kind.mojaflow[0])
        session.report.expect(
            f"{kind.name}.refused-key-reusable",
            reason is None,
            reason or "the refused key, retried with a fitting amount: 201",
        )


async def _too_much(session: Session, kind: Kind) -> tuple[str, Decimal] | None:
    """The refusal that a too large amount earns, and that amount: over `available` for a hold, over a limit for a
    credit (when the account has one)."""
    now = await session.balances()
    if now is None:
        return None
    if kind is HOLD:
        return "insufficient_funds", now.balance - now.held + 1
    limits = session.target.limits
    if isinstance(limits.get("maxCreditAmount"), str):
        return "limit_exceeded", Decimal(limits["maxCreditAmount"]) + 1
    if isinstance(limits.get("maxBalance"), str):
        return "limit_exceeded", max(Decimal(limits["maxBalance"]) - now.balance - now.pending_credits + 1, Decimal(1))
    return None


async def _invalid_requests(session: Session, kind: Kind) -> None:
    """Bad bodies are `400 invalid_request`, never a 500 (retried) nor an entry."""
    body = session.body(kind, session.key(f"{kind.name}-invalid"))
    for label, sent, raw in (
        ("amount-as-number", {**body, "amount": int(session.target.amount) or 1}, None),
        ("amount-3-decimals", {**body, "amount": f"{session.target.amount:.3f}"}, None),
        ("missing-key", {name: value for name, value in body.items() if name != kind.key_field}, None),
        ("malformed-json", None, b'{"' + kind.key_field.encode() + b'": '),
    ):
        await session.refusal(
            f"{kind.name}.invalid.{label}",
            kind.create,
            400,
            "invalid_request",
            body=sent,
            raw=raw,
            mojaflow=kind.mojaflow[0],
            kind=kind,
        )


def _other_currency(currency: str) -> str:
    """XTS is ISO 4217's code for testing: no account holds it, unless the test account does."""
    return "XTS" if currency != "XTS" else "XXX"


def _entry_problems(
    session: Session, kind: Kind, answer: Answer, status: str, expected: tuple[int, ...], mojaflow: str | None = None
) -> list[str]:
    reason = judge_success(answer, expected, mojaflow or kind.mojaflow[0])
    if reason is not None:
        return [reason]
    problems = []
    if answer.field("status") != status:
        problems.append(f"status {answer.field('status')!r}, expected {status}")
    amount = answer.field("amount")
    try:
        if Decimal(amount) != session.target.amount:
            problems.append("another amount than requested")
    except (TypeError, ArithmeticError):
        problems.append("no amount")
    if answer.field("currency") != session.target.currency:
        problems.append("another currency than requested")
    if answer.field("accountId") != session.target.account_id:
        problems.append("another accountId than requested")
    return problems
