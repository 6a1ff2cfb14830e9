"""Manual acceptance: the CBS accepts or rejects the payee and the quote through `PUT /transfers/{id}`."""

from __future__ import annotations

import httpx

from tests.conftest import Stack
from tests.support.transfers import (
    account,
    money_movement_headers,
    new_payer,
    sim_transfer,
    transfer_body,
    wait_for_state,
)

MANUAL = {"autoAcceptParty": False, "autoAcceptQuote": False}


async def _start_manual(stack: Stack, http: httpx.AsyncClient, payer: str) -> dict:
    response = await http.post(
        f"{stack.api_url}/transfers",
        json=transfer_body(payer=payer, amount="25", **MANUAL),
        headers=money_movement_headers(),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _decide(stack: Stack, http: httpx.AsyncClient, transfer_id: str, body: dict) -> httpx.Response:
    return await http.put(f"{stack.api_url}/transfers/{transfer_id}", json=body, headers=money_movement_headers())


async def test_party_then_quote_accepted_completes(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)
    assert transfer["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    assert transfer["payee"]["name"] == "Test Payee"
    assert "quote" not in transfer

    quoted = await _decide(stack, http, transfer["transferId"], {"acceptParty": True})
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
    assert quoted.json()["quote"]["transferAmount"] == "25"
    assert (await account(http, stack.cbs_url, account_id))["held"] == "0.00"  # nothing held before acceptance

    done = await _decide(stack, http, transfer["transferId"], {"acceptQuote": True})
    assert done.status_code == 200, done.text
    assert done.json()["currentState"] == "COMPLETED"
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("975.00", "0.00")


async def test_declined_quote_aborts_and_holds_nothing(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)
    await _decide(stack, http, transfer["transferId"], {"acceptParty": True})

    declined = await _decide(stack, http, transfer["transferId"], {"acceptQuote": False})

    assert declined.status_code == 200
    assert declined.json()["currentState"] == "ABORTED"
    assert declined.json()["lastError"]["code"] == "quote_declined"
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
    sdk = await sim_transfer(http, stack.sdk_url, transfer["sdkTransferId"])
    assert sdk["currentState"] == "ABORTED"
    assert sdk["prepareCount"] == 0


async def test_rejected_party_aborts_without_calling_the_sdk_again(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    rejected = await _decide(stack, http, transfer["transferId"], {"acceptParty": False})

    assert rejected.status_code == 200
    assert rejected.json()["currentState"] == "ABORTED"
    assert rejected.json()["lastError"]["code"] == "party_rejected"
    sdk = await sim_transfer(http, stack.sdk_url, transfer["sdkTransferId"])
    assert sdk["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"  # 18.0.2 refuses acceptParty=false: not sent


async def test_no_decision_in_time_aborts(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    aborted = await wait_for_state(http, stack.api_url, transfer["transferId"], {"ABORTED"}, timeout_s=20)

    assert aborted["lastError"]["code"] == "acceptance_timeout"
    assert (await account(http, stack.cbs_url, account_id))["held"] == "0.00"


async def test_decision_in_the_wrong_state_is_409_and_changes_nothing(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    early = await _decide(stack, http, transfer["transferId"], {"acceptQuote": True})

    assert early.status_code == 409
    assert early.headers["content-type"] == "application/problem+json"
    assert early.json()["code"] == "invalid_state"
    current = await http.get(f"{stack.api_url}/transfers/{transfer['transferId']}")
    assert current.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"


async def test_decision_after_the_end_is_409(stack: Stack, http: httpx.AsyncClient) -> None:
    done = (
        await http.post(f"{stack.api_url}/transfers", json=transfer_body(), headers=money_movement_headers())
    ).json()
    assert done["currentState"] == "COMPLETED"

    late = await _decide(stack, http, done["transferId"], {"acceptQuote": True})

    assert late.status_code == 409
    assert late.json()["code"] == "invalid_state"


async def test_unknown_transfer_is_404(stack: Stack, http: httpx.AsyncClient) -> None:
    unknown = "3f1c0f6e-0000-4000-8000-000000000000"
    put = await _decide(stack, http, unknown, {"acceptParty": True})
    get = await http.get(f"{stack.api_url}/transfers/{unknown}")

    assert put.status_code == get.status_code == 404
    assert put.json()["code"] == get.json()["code"] == "transfer_not_found"


async def test_a_decision_must_name_exactly_one_phase(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    both = await _decide(stack, http, transfer["transferId"], {"acceptParty": True, "acceptQuote": True})
    neither = await _decide(stack, http, transfer["transferId"], {})

    assert both.status_code == neither.status_code == 422
    assert "acceptParty" in both.json()["detail"]


async def test_another_client_cannot_decide_for_the_owner(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    foreign = await http.put(
        f"{stack.api_url}/transfers/{transfer['transferId']}",
        json={"acceptParty": True},
        headers=money_movement_headers(client_key="other"),
    )

    assert foreign.status_code == 404


async def test_a_decision_with_respond_async_answers_202_and_the_transfer_moves_on(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer = await _start_manual(stack, http, payer)

    accepted = await http.put(
        f"{stack.api_url}/transfers/{transfer['transferId']}",
        json={"acceptParty": True},
        headers={**money_movement_headers(), "Prefer": "respond-async"},
    )

    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/transfers/{transfer['transferId']}"
    quoted = await wait_for_state(http, stack.api_url, transfer["transferId"], {"WAITING_FOR_QUOTE_ACCEPTANCE"})
    assert quoted["quote"]["transferAmount"] == "25"
