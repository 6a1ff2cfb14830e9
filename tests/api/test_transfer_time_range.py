"""`GET /transfers?from=&to=`: the transfers received in a time range (half-open), and precise 422s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.conftest import Stack
from tests.support.transfers import money_movement_headers, transfer_body


async def _create(stack: Stack, http: httpx.AsyncClient) -> str:
    headers = {**money_movement_headers(), "Prefer": "respond-async"}
    response = await http.post(f"{stack.api_url}/transfers", json=transfer_body(), headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["transferId"])


async def _ids(stack: Stack, http: httpx.AsyncClient, **params: str) -> list[str]:
    response = await http.get(f"{stack.api_url}/transfers", params={"limit": "200", **params})
    assert response.status_code == 200, response.text
    return [item["transferId"] for item in response.json()["items"]]


async def test_from_and_to_select_the_transfers_received_in_between(stack: Stack, http: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    first = await _create(stack, http)
    between = datetime.now(UTC)
    second = await _create(stack, http)
    after = datetime.now(UTC)

    assert await _ids(stack, http, **{"from": before.isoformat(), "to": between.isoformat()}) == [first]
    assert await _ids(stack, http, **{"from": between.isoformat(), "to": after.isoformat()}) == [second]
    assert await _ids(stack, http, **{"from": before.isoformat()}) == [second, first]  # newest first, as ever
    assert first not in await _ids(stack, http, to=before.isoformat())
    in_kampala = between.astimezone(ZoneInfo("Africa/Kampala"))  # the same instant, another offset
    assert await _ids(stack, http, **{"from": in_kampala.isoformat(), "to": after.isoformat()}) == [second]


async def test_a_bad_range_is_422_naming_the_parameter(stack: Stack, http: httpx.AsyncClient) -> None:
    naive = await http.get(f"{stack.api_url}/transfers", params={"from": "2026-12-03T10:00:00"})
    assert naive.status_code == 422
    assert naive.json()["code"] == "validation_error" and "query.from" in naive.json()["detail"]
    garbage = await http.get(f"{stack.api_url}/transfers", params={"to": "yesterday"})
    assert garbage.status_code == 422 and "query.to" in garbage.json()["detail"]
    now = datetime.now(UTC)
    backwards = await http.get(
        f"{stack.api_url}/transfers",
        params={"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()},
    )
    assert backwards.status_code == 422
    assert backwards.json()["detail"] == "query.from: must be before query.to"
