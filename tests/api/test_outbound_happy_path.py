"""Outbound transfers through the client API, as a CBS sends them: the paths that end well."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.conftest import Stack
from tests.support.transfers import account, money_movement_headers, transfer_body, wait_for_state

PAYER_ACCOUNT = "acc-0001"


async def test_auto_accepted_transfer_completes_and_debits_the_payer_once(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    before = await account(http, stack.cbs_url, PAYER_ACCOUNT)

    response = await http.post(
        f"{stack.api_url}/transfers", json=transfer_body(amount="10.50"), headers=money_movement_headers()
    )

    assert response.status_code == 201, response.text
    transfer = response.json()
    assert response.headers["location"] == f"/transfers/{transfer['transferId']}"
    assert transfer["currentState"] == "COMPLETED"
    assert transfer["amount"] == "10.5"
    assert transfer["payee"] == {"name": "Test Payee", "fspId": "testingtoolkitdfsp"}
    assert transfer["quote"]["transferAmount"] == "10.5"
    assert transfer["sdkTransferId"]
    assert "lastError" not in transfer
    stamps = transfer["timestamps"]
    assert stamps["receivedAt"] <= stamps["partyResolvedAt"] <= stamps["quoteReceivedAt"] <= stamps["finishedAt"]
    after = await account(http, stack.cbs_url, PAYER_ACCOUNT)
    assert Decimal(before["balance"]) - Decimal(after["balance"]) == Decimal("10.5")
    assert after["held"] == before["held"]
    sim = (await http.get(f"{stack.sdk_url}/_sim/transfers/{transfer['sdkTransferId']}")).json()
    assert sim["prepareCount"] == 1


async def test_get_answers_by_our_id_and_by_the_sdk_id(stack: Stack, http: httpx.AsyncClient) -> None:
    created = (
        await http.post(f"{stack.api_url}/transfers", json=transfer_body(), headers=money_movement_headers())
    ).json()

    by_ours = await http.get(f"{stack.api_url}/transfers/{created['transferId']}")
    by_sdk = await http.get(f"{stack.api_url}/transfers/{created['sdkTransferId']}")

    assert by_ours.status_code == by_sdk.status_code == 200
    assert by_ours.json() == by_sdk.json() == created


async def test_respond_async_answers_202_at_once_and_the_transfer_still_completes(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        f"{stack.api_url}/transfers",
        json=transfer_body(),
        headers={**money_movement_headers(), "Prefer": "respond-async"},
    )

    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async"
    transfer = response.json()
    assert transfer["currentState"] == "RECEIVED"
    assert response.headers["location"] == f"/transfers/{transfer['transferId']}"
    done = await wait_for_state(http, stack.api_url, transfer["transferId"], {"COMPLETED"})
    assert done["sdkTransferId"]
