"""What the tests send and how they wait: as a CBS would, over HTTP, with bounded polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from mojaflow.temporal import outbound_workflow_id

__all__ = [
    "account",
    "money_movement_headers",
    "new_payer",
    "set_fault",
    "sim_requests",
    "sim_transfer",
    "start_async",
    "transfer_body",
    "wait_for_state",
]

FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}
PAYER = "25644444444"


def money_movement_headers(key: str | None = None, client_key: str = "bank1", **overrides: str) -> dict[str, str]:
    headers = {
        "client_key": client_key,
        "product": "retail_payments",
        "payment_channel": "mobile_banking",
        "idempotent_request_key": key or uuid.uuid4().hex,
        "timestamp": "2026-11-25T10:00:00.000+03:00",
    }
    headers.update(overrides)
    return headers


def transfer_body(
    *, amount: str = "10", payee: str = "25633333333", payer: str = PAYER, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "homeTransactionId": f"home-{uuid.uuid4()}",
        "from": {"idType": "MSISDN", "idValue": payer},
        "to": {"idType": "MSISDN", "idValue": payee},
        "amountType": "SEND",
        "currency": "USD",
        "amount": amount,
        "transactionType": "TRANSFER",
    }
    body.update(overrides)
    return body


async def start_async(http: httpx.AsyncClient, api_url: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """`POST /transfers` with `Prefer: respond-async`: the 202's transfer and the workflow id it runs under."""
    headers = money_movement_headers()
    response = await http.post(f"{api_url}/transfers", json=body, headers={**headers, "Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return response.json(), outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])


async def wait_for_state(
    http: httpx.AsyncClient, api_url: str, transfer_id: str, states: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    """Poll `GET /transfers/{id}` until the state is one of `states`; fail with the last one seen."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"{api_url}/transfers/{transfer_id}")
        if response.status_code == 200:
            last = response.json()
            if last["currentState"] in states:
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"transfer {transfer_id} never reached {states}; last seen {last.get('currentState')}")


async def account(http: httpx.AsyncClient, cbs_url: str, account_id: str) -> dict[str, Any]:
    response = await http.get(f"{cbs_url}/accounts/{account_id}")
    response.raise_for_status()
    return response.json()


async def new_payer(http: httpx.AsyncClient, cbs_url: str, balance: str = "1000.00") -> tuple[str, str]:
    """A fresh active USD account at the CBS simulator, so a test's balances are its own: (msisdn, account id)."""
    msisdn = f"2567{uuid.uuid4().int % 10**7:07d}"
    account_id = f"acc-{uuid.uuid4().hex[:12]}"
    response = await http.post(
        f"{cbs_url}/_sim/accounts",
        json={
            "accountId": account_id,
            "currency": "USD",
            "balance": balance,
            "holder": {"displayName": "Test Payer", "firstName": "Test", "lastName": "Payer"},
            "parties": [{"idType": "MSISDN", "idValue": msisdn}],
        },
    )
    response.raise_for_status()
    return msisdn, account_id


async def set_fault(http: httpx.AsyncClient, sdk_url: str, home_transaction_id: str, **fault: Any) -> None:
    """Arm the SDK simulator's fault switch for one transfer (keyed by its homeTransactionId)."""
    response = await http.put(f"{sdk_url}/_sim/faults/{home_transaction_id}", json=fault)
    response.raise_for_status()


async def sim_transfer(http: httpx.AsyncClient, sdk_url: str, sdk_transfer_id: str) -> dict[str, Any]:
    """What the SDK simulator knows: its state, the switch's state and how many prepares it sent."""
    response = await http.get(f"{sdk_url}/_sim/transfers/{sdk_transfer_id}")
    response.raise_for_status()
    return response.json()


async def sim_requests(http: httpx.AsyncClient, sdk_url: str, home_transaction_id: str) -> dict[str, Any]:
    """How many party lookups (`partyLookups`) and party acceptances (`partyAcceptances`) reached the SDK simulator
    for this homeTransactionId, counted as each arrived (so also those still in flight)."""
    response = await http.get(f"{sdk_url}/_sim/requests/{home_transaction_id}")
    response.raise_for_status()
    return response.json()
