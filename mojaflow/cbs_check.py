"""`mojaflow cbs-check`: does a bank's CBS keep the contract mojaflow relies on? (registered in `mojaflow.cli`)

    mojaflow cbs-check --url http://cbs-test.bank.internal:3005 --account TEST-0001 --msisdn 25600000001

It calls every operation of `cbs-contract.openapi.yaml` a bank implements, as mojaflow's CBS client does
(activities/core_banking.py: no credentials, `MOJAFLOW_CBS_URL` and `MOJAFLOW_CBS_TIMEOUT_S` by default), on one
test account: holds and credit reservations by key (replayed, concurrent, conflicting), commit and release (and their
repeats), every refusal the contract lists with its HTTP status, bad requests, unknown ids; it watches the
account's balances to see that money moved once and refusals moved nothing, validates every answer against the
contract's schemas, then releases what it left open. Committing a hold and a credit of the same amount leaves the
balance as it was (`--no-commit`: nothing debited nor credited). One line per check, PASS, FAIL or SKIP with the
reason; exit code 1 when anything failed, 2 for bad options. `--unavailable` runs the unavailability drill instead
(mojaflow/cbs_check_drill.py), while the bank has made its CBS unavailable.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer

from mojaflow.cbs_check_drill import run_drill
from mojaflow.cbs_check_entries import check_entries
from mojaflow.cbs_check_session import CREDIT, HOLD, Balances, Session, Target, wire
from mojaflow.cbs_contract import CONTRACT_PATH, Contract
from mojaflow.cbs_probe import Probe, Report, Verdict, judge_success
from mojaflow.settings import Settings

__all__ = ["cbs_check", "run_check"]

_AMOUNT = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")


async def run_check(
    url: str,
    account_id: str,
    *,
    currency: str | None = None,
    amount: Decimal = Decimal(1),
    msisdn: str | None = None,
    blocked_account: str | None = None,
    closed_account: str | None = None,
    commit: bool = True,
    timeout_s: float = 10.0,
    contract: Contract | None = None,
    unavailable: bool = False,
) -> int:
    """Run every check against the CBS at `url`, printing a line each; the exit code (0: everything conforms).
    `unavailable`: the unavailability drill instead (mojaflow/cbs_check_drill.py)."""
    report = Report(typer.echo)
    private = [account_id, msisdn or "", blocked_account or "", closed_account or ""]
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as http:
        probe = Probe(http, contract or Contract.load(), private)
        if unavailable:
            drill = Session(probe, report, Target(account_id, currency or "USD", amount, secrets.token_hex(4), False))
            await run_drill(drill)
            if drill.opened:
                await drill.clean_up((HOLD, CREDIT))
            return _summary(report)
        target = await _reach(probe, report, account_id, currency, amount, commit)
        if target is not None:
            session = Session(probe, report, target)
            start = await session.balances()
            await _parties(session, msisdn)
            await check_entries(session, HOLD)
            await _credit_checks(session)
            await check_entries(session, CREDIT)
            for other, status in ((blocked_account, "blocked"), (closed_account, "closed")):
                await _inactive_account(session, other, status)
            await session.clean_up((HOLD, CREDIT))
            await _restored(session, start)
        probe.report_schemas(report)
    return _summary(report)


def _summary(report: Report) -> int:
    passed, failed, skipped = (report.count(v) for v in (Verdict.PASS, Verdict.FAIL, Verdict.SKIP))
    verdict = "the CBS keeps the contract" if not failed else "the CBS does NOT keep the contract"
    typer.echo(f"cbs-check: {passed} conform, {failed} do not, {skipped} skipped: {verdict}")
    return report.exit_code


async def _restored(session: Session, start: Balances | None) -> None:
    """After the clean-up the account is as it was, and every read of it showed its balances."""
    end, report, unreadable = await session.balances(), session.report, session.unreadable
    report.expect(
        "account.balances",
        not unreadable,
        f"{unreadable} read(s) of the account without balance, held, pendingCredits: moves unseen"
        if unreadable
        else "every read of the account showed its balance, held and pendingCredits",
    )
    moved = end.moved(start) if start is not None and end is not None else "unknown (the account unreadable)"
    report.expect(
        "account.restored",
        not moved,
        f"the account moved by [{moved}] over the run" if moved else "balance, held, pendingCredits as before",
    )


async def _reach(
    probe: Probe, report: Report, account_id: str, currency: str | None, amount: Decimal, commit: bool
) -> Target | None:
    """The CBS answers and has the test account; its currency and limits. None: nothing else can be checked."""
    health = await probe.call("health")
    healthy = health.status == 200 and health.field("status") == "ok"
    if not report.expect("health", healthy, health.describe()) and health.status is None:
        report.skip("*", "the CBS does not answer: nothing else can be checked")
        return None
    answer = await probe.call("getAccount", {"accountId": account_id})
    reason = judge_success(answer, (200,), "get_account")
    if not report.expect("account.get", reason is None, reason or "200"):
        report.skip("*", "every other check needs the test account (--account)")
        return None
    held, balance, available = (answer.field(name) for name in ("held", "balance", "available"))
    try:
        consistent = Decimal(available) == Decimal(balance) - Decimal(held)
    except (TypeError, ArithmeticError):
        consistent = False
    report.expect(
        "account.available", consistent, "available = balance - held" if consistent else "available ≠ balance - held"
    )
    actual = answer.field("currency")
    if not isinstance(actual, str) or (currency is not None and actual != currency):
        report.add(Verdict.FAIL, "account.currency", f"the account's currency is {actual!r}, not --currency {currency}")
        return None
    limits = answer.field("limits")
    return Target(account_id, actual, amount, secrets.token_hex(4), commit, limits if isinstance(limits, dict) else {})


async def _parties(session: Session, msisdn: str | None) -> None:
    target, probe, report = session.target, session.probe, session.report
    lookups = [("party.account-id", "ACCOUNT_ID", target.account_id)]
    lookups += [("party.msisdn", "MSISDN", msisdn)] if msisdn else []
    for check, id_type, id_value in lookups:
        answer = await probe.call("getParty", {"idType": id_type, "idValue": id_value})
        reason = judge_success(answer, (200,), "get_party")
        if reason is None and answer.field("accountId") != target.account_id:
            reason = "resolves to another account than --account"
        if reason is None and answer.field("currency") != target.currency:
            reason = "another currency than the account's"
        report.expect(check, reason is None, reason or "200, the test account")
    if not msisdn:
        report.skip("party.msisdn", "no --msisdn given")
    unknown = session.key("no-party")
    await session.refusal(
        "party.not-found",
        "getParty",
        404,
        "party_not_found",
        params={"idType": "ACCOUNT_ID", "idValue": unknown},
        mojaflow="get_party",
    )
    await session.refusal(
        "party.sub-id.not-found",
        "getPartyWithSubId",
        404,
        "party_not_found",
        params={"idType": "ACCOUNT_ID", "idValue": target.account_id, "idSubValue": "cbs-check"},
        mojaflow="get_party",
    )
    await session.refusal(
        "party.unsupported-id-type",
        "getParty",
        400,
        "unsupported_id_type",
        params={"idType": "EMAIL", "idValue": unknown},
        mojaflow="get_party",
    )
    await session.refusal(
        "account.not-found",
        "getAccount",
        404,
        "account_not_found",
        params={"accountId": unknown},
        mojaflow="get_account",
    )


async def _credit_checks(session: Session) -> None:
    """`POST /credit-checks`: allowed (reserving nothing), and its refusals."""
    target = session.target
    body = {"accountId": target.account_id, "amount": wire(target.amount), "currency": target.currency}
    before = await session.balances()
    answer = await session.probe.call("checkCredit", body=body)
    after = await session.balances()
    reason = judge_success(answer, (200,), "check_credit")
    if reason is None and (answer.field("allowed") is not True or answer.field("accountId") != target.account_id):
        reason = "not {accountId: the account, allowed: true}"
    if reason is None and before is not None and after is not None and after.moved(before):
        reason = f"a check reserves nothing, but the account moved: {after.moved(before)}"
    session.report.expect("credit-check.allowed", reason is None, reason or "200 allowed, nothing reserved")
    cases = [
        ("unsupported_currency", 409, {**body, "currency": "XTS" if target.currency != "XTS" else "XXX"}),
        ("account-not-found", 404, {**body, "accountId": session.key("no-account")}),
        ("invalid.amount-as-number", 400, {**body, "amount": 1}),
    ]
    limit = target.limits.get("maxCreditAmount")
    if isinstance(limit, str):
        cases.append(("limit_exceeded", 409, {**body, "amount": wire(Decimal(limit) + 1)}))
    else:
        session.report.skip("credit-check.limit_exceeded", "the account has no limits.maxCreditAmount")
    codes = {"account-not-found": "account_not_found", "invalid.amount-as-number": "invalid_request"}
    for label, status, sent in cases:
        await session.refusal(
            f"credit-check.{label}", "checkCredit", status, codes.get(label, label), body=sent, mojaflow="check_credit"
        )


async def _inactive_account(session: Session, account_id: str | None, status: str) -> None:
    """A blocked or closed account still resolves (with its status) but is neither debited nor credited."""
    check = f"account.{status}"
    if not account_id:
        session.report.skip(check, f"no --{status}-account given")
        return
    answer = await session.probe.call("getParty", {"idType": "ACCOUNT_ID", "idValue": account_id})
    reason = judge_success(answer, (200,), "get_party")
    if reason is None and answer.field("status") != status:
        reason = f"resolves with status {answer.field('status')!r}, not {status}"
    session.report.expect(f"{check}.party", reason is None, reason or f"200, status {status}")
    code = f"account_{status}"
    for kind in (HOLD, CREDIT):
        body = {**session.body(kind, session.key(f"{kind.name}-{status}")), "accountId": account_id}
        await session.refusal(
            f"{check}.{kind.name}", kind.create, 409, code, body=body, mojaflow=kind.mojaflow[0], kind=kind
        )
    body = {"accountId": account_id, "amount": wire(session.target.amount), "currency": session.target.currency}
    await session.refusal(f"{check}.credit-check", "checkCredit", 409, code, body=body, mojaflow="check_credit")


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal(0)
    if not _AMOUNT.match(value) or amount <= 0:
        _usage(f"--amount {value!r}: a positive amount with at most 2 decimals")
    return amount


def _usage(message: str) -> NoReturn:
    typer.echo(f"mojaflow cbs-check: {message}", err=True)
    raise typer.Exit(2)


def cbs_check(
    account: Annotated[
        str, typer.Option(help="A test account the check may hold, debit and credit (not a customer's).")
    ],
    url: Annotated[str | None, typer.Option(help="The CBS's base URL (default: MOJAFLOW_CBS_URL).")] = None,
    currency: Annotated[
        str | None, typer.Option(help="The account's currency, checked (default: as the CBS says).")
    ] = None,
    amount: Annotated[str, typer.Option(help="The amount of each hold and credit.")] = "1",
    msisdn: Annotated[str | None, typer.Option(help="An MSISDN of the test account, to check its lookup.")] = None,
    blocked_account: Annotated[str | None, typer.Option(help="A blocked test account: refusals checked.")] = None,
    closed_account: Annotated[str | None, typer.Option(help="A closed test account: refusals checked.")] = None,
    commit: Annotated[bool, typer.Option("--commit/--no-commit", help="Also commit a hold and a credit.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Seconds per call (default: MOJAFLOW_CBS_TIMEOUT_S).")] = None,
    contract: Annotated[Path, typer.Option(help="The contract to check against.")] = CONTRACT_PATH,
    unavailable: Annotated[
        bool, typer.Option(help="The unavailability drill, while the bank has made its CBS unavailable.")
    ] = False,
) -> None:
    """Run the CBS contract against a bank's CBS: PASS / FAIL per check; exit 1 when anything fails."""
    money = _amount(amount)
    if url is None or timeout is None:
        try:
            settings = Settings()
        except ValueError as error:  # a malformed setting: say which, no traceback
            _usage(str(error))
        url, timeout = url or settings.cbs_url, timeout or settings.cbs_timeout_s
    if not re.match(r"^https?://[^/\s]+", url):
        _usage(f"--url {url!r}: an http:// or https:// URL")
    if timeout <= 0:
        _usage("--timeout: a positive number of seconds")
    try:
        loaded = Contract.load(contract)
    except (OSError, ValueError) as error:
        _usage(f"cannot read the contract: {error}")
    code = asyncio.run(
        run_check(
            url,
            account,
            currency=currency,
            amount=money,
            msisdn=msisdn,
            blocked_account=blocked_account,
            closed_account=closed_account,
            commit=commit,
            timeout_s=timeout,
            contract=loaded,
            unavailable=unavailable,
        )
    )
    raise typer.Exit(code)
