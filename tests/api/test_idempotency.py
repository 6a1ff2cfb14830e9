"""Idempotency by `idempotent_request_key`, scoped to (client_key, method, route): never a second transfer."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.conftest import Stack
from tests.support.transfers import money_movement_headers, transfer_body


async def _workflows_for(stack: Stack, home_transaction_id: str) -> int:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count


async def test_same_key_same_body_replays_the_same_transfer(stack: Stack, http: httpx.AsyncClient) -> None:
    headers, body = money_movement_headers(), transfer_body()
    first = await http.post(f"{stack.api_url}/transfers", json=body, headers=headers)

    replay = await http.post(f"{stack.api_url}/transfers", json=body, headers=headers)

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert await _workflows_for(stack, body["homeTransactionId"]) == 1


async def test_same_key_other_body_is_422_and_changes_nothing(stack: Stack, http: httpx.AsyncClient) -> None:
    headers, body = money_movement_headers(), transfer_body()
    first = await http.post(f"{stack.api_url}/transfers", json=body, headers=headers)

    other = await http.post(f"{stack.api_url}/transfers", json={**body, "amount": "11"}, headers=headers)

    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert "idempotent_request_key" in other.json()["detail"]
    current = await http.get(f"{stack.api_url}/transfers/{first.json()['transferId']}")
    assert current.json()["amount"] == "10"


async def test_the_key_is_scoped_to_the_client(stack: Stack, http: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    ours = await http.post(
        f"{stack.api_url}/transfers", json=transfer_body(), headers=money_movement_headers(key, client_key="bankA")
    )
    theirs = await http.post(
        f"{stack.api_url}/transfers", json=transfer_body(), headers=money_movement_headers(key, client_key="bankB")
    )

    assert ours.status_code == theirs.status_code == 201
    assert ours.json()["transferId"] != theirs.json()["transferId"]


async def test_twenty_concurrent_duplicates_make_one_transfer(stack: Stack, http: httpx.AsyncClient) -> None:
    headers, body = money_movement_headers(), transfer_body()

    responses = await asyncio.gather(
        *(http.post(f"{stack.api_url}/transfers", json=body, headers=headers) for _ in range(20))
    )

    assert {response.status_code for response in responses} <= {200, 201, 202}
    assert len({response.json()["transferId"] for response in responses}) == 1
    assert sum(response.status_code != 200 for response in responses) == 1  # one created it, 19 replayed
    assert await _workflows_for(stack, body["homeTransactionId"]) == 1
    transfer_id = responses[0].json()["transferId"]
    final = await http.get(f"{stack.api_url}/transfers/{transfer_id}")
    sdk = (await http.get(f"{stack.sdk_url}/_sim/transfers/{final.json()['sdkTransferId']}")).json()
    assert sdk["prepareCount"] == 1
