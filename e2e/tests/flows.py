"""What the scenarios do and check, as a bank and an operator would: our client API over HTTP, the CBS simulator's
balances, and what the switch saw (the switch front's record)."""

from __future__ import annotations

from typing import Any

import httpx

from e2e.tests.conftest import E2E
from tests.support.transfers import account, money_movement_headers, wait_for_state

__all__ = [
    "MANUAL",
    "balances",
    "decide",
    "hold_next_prepare",
    "held_prepare",
    "release_prepare",
    "send",
    "switch_queries_of_unknown",
    "switch_saw",
    "wait_until",
]

MANUAL: dict[str, Any] = {"autoAcceptParty": False, "autoAcceptQuote": False}  # as a body's fields


async def send(
    e2e: E2E,
    http: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    respond_async: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`POST /transfers` as the CBS sends it: 201 with the outcome (or the decision it waits for), or 202."""
    headers = dict(headers or money_movement_headers())
    if respond_async:
        headers["Prefer"] = "respond-async"
    response = await http.post(f"{e2e.stack.api_url}/transfers", json=body, headers=headers)
    assert response.status_code == (202 if respond_async else 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


async def decide(
    e2e: E2E, http: httpx.AsyncClient, transfer_id: str, decision: dict[str, bool], *, respond_async: bool = False
) -> dict[str, Any]:
    headers = money_movement_headers()
    if respond_async:
        headers["Prefer"] = "respond-async"
    response = await http.put(f"{e2e.stack.api_url}/transfers/{transfer_id}", json=decision, headers=headers)
    assert response.status_code == (202 if respond_async else 200), response.text
    answer: dict[str, Any] = response.json()
    return answer


async def balances(e2e: E2E, http: httpx.AsyncClient, account_id: str) -> tuple[str, str]:
    """(balance, held) at the CBS simulator."""
    found = await account(http, e2e.stack.cbs_url, account_id)
    return found["balance"], found["held"]


async def switch_saw(e2e: E2E, http: httpx.AsyncClient, sdk_transfer_id: str) -> dict[str, Any] | None:
    """What the switch recorded of this transfer (prepares, state, fulfilment), None if it never saw it."""
    response = await http.get(f"{e2e.mojaloop.switch_url}/_switch/transfers/{sdk_transfer_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


async def wait_until(
    http: httpx.AsyncClient, e2e: E2E, transfer_id: str, states: set[str], timeout_s: float = 60
) -> dict[str, Any]:
    """Poll `GET /transfers/{id}` (ours) until its state is one of `states`; fail with the last one seen."""
    return await wait_for_state(http, e2e.stack.api_url, transfer_id, states, timeout_s=timeout_s)


async def switch_queries_of_unknown(e2e: E2E, http: httpx.AsyncClient, sdk_transfer_id: str) -> int:
    """How often the switch answered 3208 (never seen) for this id."""
    response = await http.get(f"{e2e.mojaloop.switch_url}/_switch/transfers/{sdk_transfer_id}")
    assert response.status_code == 404, "the switch saw this transfer"
    queries: int = response.json()["queries"]
    return queries


async def hold_next_prepare(e2e: E2E, http: httpx.AsyncClient) -> None:
    """The switch front keeps the next prepare (`POST /transfers`) from going on to TTK until released."""
    (await http.post(f"{e2e.mojaloop.switch_url}/_switch/hold")).raise_for_status()


async def held_prepare(e2e: E2E, http: httpx.AsyncClient, wait_s: float = 30) -> str:
    """The SDK transfer id of the held prepare, as soon as the SDK has sent it (a long poll, not a sleep)."""
    response = await http.get(f"{e2e.mojaloop.switch_url}/_switch/held", params={"wait_s": wait_s})
    assert response.status_code == 200, "no prepare arrived to be held"
    transfer_id: str = response.json()["transferId"]
    return transfer_id


async def release_prepare(e2e: E2E, http: httpx.AsyncClient, sdk_transfer_id: str, *, forward: bool) -> None:
    """Send the held prepare on to TTK, or reset the SDK's connection: then it never left the SDK's side."""
    url = f"{e2e.mojaloop.switch_url}/_switch/held/{sdk_transfer_id}"
    (await http.post(url, params={"forward": str(forward).lower()})).raise_for_status()
