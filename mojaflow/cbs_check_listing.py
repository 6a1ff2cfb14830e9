"""`mojaflow cbs-check`: `GET /holds?status=HELD`, the open holds mojaflow's sweeper reads to find a hold left open
after its transfer ended. Checked only when the contract has it (operation `listHolds`).

The check's own open hold must be listed (paging by `nextCursor` from the oldest), as HELD, with its key; not any
more once released; not before a `createdBefore` in the past; a page never longer than its `limit`; another status
is `400 invalid_request`.
"""

from __future__ import annotations

from typing import Any

from mojaflow.cbs_check_session import Session
from mojaflow.cbs_probe import judge_success

__all__ = ["check_listed", "check_listing", "has_listing"]

_PAGE = 500
_MAX_PAGES = 100  # 50,000 open holds: a test CBS with more is not one to check on
_LONG_AGO = "2000-01-01T00:00:00Z"


def has_listing(session: Session) -> bool:
    return "listHolds" in session.probe.contract.operations


async def _find(session: Session, hold_id: str, query: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The listed hold with `hold_id` (or None), or why the listing could not be read."""
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = {**query, "status": "HELD", "limit": str(_PAGE), **({"cursor": cursor} if cursor else {})}
        answer = await session.probe.call("listHolds", query=page)
        reason = judge_success(answer, (200,), "list_holds")
        holds, cursor = answer.field("holds"), answer.field("nextCursor")
        if reason is None and not isinstance(holds, list):
            reason = "no list of holds"
        if reason is not None:
            return None, reason
        assert isinstance(holds, list)
        if any(isinstance(hold, dict) and hold.get("status") != "HELD" for hold in holds):
            return None, "a page lists a hold that is not HELD"
        for hold in holds:
            if isinstance(hold, dict) and hold.get("holdId") == hold_id:
                return hold, None
        if not isinstance(cursor, str) or not cursor:
            return None, None
    return None, f"not within the first {_PAGE * _MAX_PAGES} open holds"


async def check_listed(session: Session, hold_id: str, hold_key: str, *, listed: bool) -> None:
    """The hold `hold_id` is listed (`listed`, while HELD) or not (after its release)."""
    check = "hold.list" if listed else "hold.list.after-release"
    found, reason = await _find(session, hold_id, {})
    if reason is None and listed and found is None:
        reason = "the open hold is not listed: the sweeper would never see it"
    if reason is None and listed and found is not None and found.get("holdKey") != hold_key:
        reason = "listed with another holdKey: the sweeper could not tell its transfer"
    if reason is None and not listed and found is not None:
        reason = "the released hold is still listed as open"
    good = "the open hold is listed, HELD, with its key" if listed else "the released hold is not listed"
    session.report.expect(check, reason is None, reason or good)
    if listed:
        found, reason = await _find(session, hold_id, {"createdBefore": _LONG_AGO})
        if reason is None and found is not None:
            reason = f"listed with createdBefore={_LONG_AGO}"
        session.report.expect("hold.list.created-before", reason is None, reason or "not listed before it was made")


async def check_listing(session: Session) -> None:
    """A page is at most `limit` long; only `status=HELD` is part of the contract."""
    answer = await session.probe.call("listHolds", query={"status": "HELD", "limit": "1"})
    holds = answer.field("holds")
    reason = judge_success(answer, (200,), "list_holds")
    if reason is None and (not isinstance(holds, list) or len(holds) > 1):
        reason = "limit=1, but the page has more than one hold"
    session.report.expect("hold.list.limit", reason is None, reason or "limit=1: at most one hold")
    await session.refusal(
        "hold.list.invalid-status",
        "listHolds",
        400,
        "invalid_request",
        query={"status": "COMMITTED"},
    )
