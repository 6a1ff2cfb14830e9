"""`GET /holds?status=HELD` of the CBS simulator over real HTTP: open holds only, oldest first, bounded pages
that a cursor walks without gaps or repeats, `createdBefore`, and a precise 400 for every bad parameter."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.simulators._sims import Sim
from tests.simulators.test_cbs_simulator import hold, new_account


@pytest.fixture
def client(cbs_sim: Sim) -> httpx.Client:
    with httpx.Client(base_url=cbs_sim.url, timeout=10) as c:
        yield c


def all_open(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every open hold, page by page."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = {"status": "HELD", **params, **({"cursor": cursor} if cursor else {})}
        r = client.get("/holds", params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"holds", "nextCursor"}
        found += page["holds"]
        cursor = page["nextCursor"]
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


def test_lists_open_holds_only_with_their_reference_amount_and_time(client: httpx.Client) -> None:
    acc = new_account(client, balance="100.00")
    keys = [f"{uuid.uuid4()}-hold" for _ in range(3)]
    ids = [hold(client, acc, "5.5", key).json()["holdId"] for key in keys]
    assert client.post(f"/holds/{ids[1]}/commit").status_code == 200
    assert client.post(f"/holds/{ids[2]}/release").status_code == 200

    listed = {h["holdId"]: h for h in all_open(client)}
    assert ids[0] in listed and ids[1] not in listed and ids[2] not in listed
    mine = listed[ids[0]]
    assert mine["holdKey"] == keys[0]
    assert (mine["amount"], mine["currency"], mine["status"], mine["accountId"]) == ("5.50", "USD", "HELD", acc)
    created = datetime.fromisoformat(mine["createdAt"])
    assert created.tzinfo is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_pages_walk_every_open_hold_oldest_first_once(client: httpx.Client) -> None:
    acc = new_account(client, balance="100.00")
    ids = {hold(client, acc, "1").json()["holdId"] for _ in range(7)}
    first = client.get("/holds", params={"status": "HELD", "limit": 3}).json()
    assert len(first["holds"]) == 3 and first["nextCursor"]

    walked = all_open(client, limit=3)
    walked_ids = [h["holdId"] for h in walked]
    assert len(walked_ids) == len(set(walked_ids))  # no repeats across pages
    assert ids <= set(walked_ids)  # no gaps
    order = [(h["createdAt"], h["holdId"]) for h in walked]
    assert order == sorted(order)


def test_created_before_bounds_the_listing(client: httpx.Client) -> None:
    acc = new_account(client, balance="100.00")
    older = hold(client, acc, "2").json()["holdId"]
    time.sleep(0.01)  # the ledger keeps milliseconds: the bound falls strictly between the two holds
    bound = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    newer = hold(client, acc, "2").json()["holdId"]

    listed = {h["holdId"] for h in all_open(client, createdBefore=bound)}
    assert older in listed and newer not in listed
    offset = datetime.fromisoformat(bound).astimezone().isoformat()  # the same instant in another offset
    assert {h["holdId"] for h in all_open(client, createdBefore=offset)} == listed


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "status"),
        ({"status": "COMMITTED"}, "status"),
        ({"status": "HELD", "limit": "0"}, "limit"),
        ({"status": "HELD", "limit": "501"}, "limit"),
        ({"status": "HELD", "limit": "ten"}, "limit"),
        ({"status": "HELD", "createdBefore": "yesterday"}, "createdBefore"),
        ({"status": "HELD", "createdBefore": "2026-12-03T12:00:00"}, "createdBefore"),
        ({"status": "HELD", "cursor": "not-a-cursor"}, "cursor"),
        ({"status": "HELD", "cursor": "WyJhIl0"}, "cursor"),  # base64url JSON, but not ours
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client: httpx.Client, params: dict[str, str], field: str) -> None:
    r = client.get("/holds", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert r.json()["message"].startswith(f"{field}:")
