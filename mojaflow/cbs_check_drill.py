"""`mojaflow cbs-check --unavailable`: the unavailability drill, run while the bank has made its CBS unavailable
(its database or ledger stopped behind its API, a maintenance switch).

mojaflow retries unavailability and never a refusal. A CBS that answers a documented refusal while it cannot work
(`404 hold_not_found` from an empty cache, `409 insufficient_funds` from an unreadable balance) makes mojaflow give
up for good: a hold never committed after the switch committed the transfer. The normal run cannot see this (a CBS
cannot be made unavailable from outside), so the drill calls each operation mojaflow's worker uses once and
accepts only what mojaflow would retry: no answer, a 5xx, or any answer that is not one of the operation's
documented refusals.
"""

from __future__ import annotations

from activities.core_banking import REFUSALS
from mojaflow.cbs_check_session import CREDIT, HOLD, Session, wire

__all__ = ["run_drill"]


async def run_drill(session: Session) -> None:
    target = session.target
    credit_check = {"accountId": target.account_id, "amount": wire(target.amount), "currency": target.currency}
    hold_id, reservation_id = {"holdId": session.key("drill-hold")}, {"reservationId": session.key("drill-credit")}
    calls = [
        ("getParty", "get_party", {"idType": "ACCOUNT_ID", "idValue": target.account_id}, None),
        ("createHold", "create_hold", None, session.body(HOLD, session.key("drill-hold"))),
        ("commitHold", "commit_hold", hold_id, None),
        ("releaseHold", "release_hold", hold_id, None),
        ("checkCredit", "check_credit", None, credit_check),
        ("reserveCredit", "reserve_credit", None, session.body(CREDIT, session.key("drill-credit"))),
        ("commitCredit", "commit_credit", reservation_id, None),
        ("releaseCredit", "release_credit", reservation_id, None),
    ]
    for operation_id, mojaflow, params, body in calls:
        answer = await session.probe.call(operation_id, params, body=body)
        for kind in (HOLD, CREDIT):
            if operation_id == kind.create:
                session.track(kind, answer, body)
        check = f"unavailable.{operation_id}"
        if answer.ok:
            session.report.expect(check, False, f"{answer.describe()}: the CBS works; run the drill while it does not")
        elif answer.status is not None and answer.code in REFUSALS[mojaflow].get(answer.status, frozenset()):
            session.report.expect(
                check,
                False,
                f"{answer.describe()} while unavailable: mojaflow takes it as a refusal, final, never retried "
                "(non-conforming, dangerous)",
            )
        else:
            session.report.expect(check, True, f"{answer.describe()}: mojaflow retries it")
