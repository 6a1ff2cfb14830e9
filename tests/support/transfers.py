"""What the tests send and how they wait: as a CBS would, over HTTP, with bounded polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

__all__ = ["money_movement_headers", "transfer_body", "wait_for_state", "account"]

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
