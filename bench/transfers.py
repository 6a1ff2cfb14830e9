"""The kinds of transfer the bench sends, each as `one(i) -> None | why it failed` for `run_phase`:

- `mojaflow_transfer`: `POST /transfers` on our client API, answered once COMPLETED (the default `Prefer` wait);
- `bare_transfer`: the bare workflow of `bench/baseline.py`, started and awaited with `execute_workflow`;
- `direct_transfer`: the same three SDK calls by a plain httpx client in sequence, no Temporal (the latency floor).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client

from bench.baseline import BareTransfer, BareTransferWorkflow

__all__ = [
    "CLIENT_KEY",
    "PAYER",
    "bare_transfer",
    "direct_transfer",
    "history_shape",
    "mojaflow_transfer",
    "mojaflow_workflow_id",
    "money_movement_headers",
    "new_payee",
    "transfer_body",
]

PAYER = "25644444444"  # the CBS simulator's seeded payer holds 1,000,000 USD
CLIENT_KEY = "bench"

One = Callable[[int], Awaitable[str | None]]


def money_movement_headers() -> dict[str, str]:
    return {
        "client_key": CLIENT_KEY,
        "product": "retail_payments",
        "payment_channel": "mobile_banking",
        "idempotent_request_key": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def mojaflow_workflow_id(idempotency_key: str) -> str:
    return f"outbound-{CLIENT_KEY}-{idempotency_key}"


def new_payee() -> str:
    """A payee of its own for each transfer, as real traffic has: our worker sends one party lookup per payee at a
    time (activities/payee_locks.py), so one payee for every transfer would queue all lookups behind one lock.
    The SDK simulator resolves any MSISDN but its two magic ids (2560000040x)."""
    return f"2563{uuid.uuid4().int % 10**8:08d}"


def transfer_body(**extra: Any) -> dict[str, Any]:
    return {
        "homeTransactionId": f"bench-{uuid.uuid4()}",
        "from": {"idType": "MSISDN", "idValue": PAYER},
        "to": {"idType": "MSISDN", "idValue": new_payee()},
        "amountType": "SEND",
        "currency": "USD",
        "amount": "1",
        "transactionType": "TRANSFER",
        **extra,
    }


def mojaflow_transfer(
    http: httpx.AsyncClient, api_url: str, keys: list[str], *, state: str = "COMPLETED", **body: Any
) -> One:
    """`POST /transfers` with the default `Prefer` wait: it answers once the transfer is in `state` (201).
    `body`: more fields of the request (e.g. autoAcceptQuote)."""

    async def one(_: int) -> str | None:
        headers = money_movement_headers()
        keys.append(headers["idempotent_request_key"])
        response = await http.post(f"{api_url}/transfers", headers=headers, json=transfer_body(**body))
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        current = answer.get("currentState")
        if response.status_code == 201 and current == state:
            return None
        error = answer.get("lastError") or answer.get("code") or answer.get("detail") or response.text[:200]
        return f"HTTP {response.status_code} {current}: {error}"

    return one


def bare_transfer(client: Client, task_queue: str, ids: list[str], *, local_before_money: bool = True) -> One:
    async def one(_: int) -> str | None:
        workflow_id = f"bare-{uuid.uuid4()}"
        ids.append(workflow_id)
        transfer = BareTransfer(body=transfer_body(), local_before_money=local_before_money)
        result = await client.execute_workflow(
            BareTransferWorkflow.run, transfer, id=workflow_id, task_queue=task_queue
        )
        return None if result.state == "COMPLETED" else f"ended {result.state}"

    return one


def direct_transfer(sdk: httpx.AsyncClient) -> One:
    """The three calls our workflow makes to the SDK, straight from a client: nothing held, saved or orchestrated."""

    async def one(_: int) -> str | None:
        party = await sdk.post("/transfers", json=transfer_body())
        party.raise_for_status()
        transfer_id = party.json()["transferId"]
        (await sdk.put(f"/transfers/{transfer_id}", json={"acceptParty": True})).raise_for_status()
        done = await sdk.put(f"/transfers/{transfer_id}", json={"acceptQuote": True})
        done.raise_for_status()
        state = done.json().get("currentState")
        return None if state == "COMPLETED" else f"SDK answered {state}"

    return one


async def history_shape(client: Client, workflow_id: str) -> dict[str, Any]:
    """What one transfer costs Temporal: its history events by type, and the workflow tasks it took."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(
        (event.WhichOneof("attributes") or "?").removesuffix("_event_attributes") for event in history.events
    )
    return {"events": len(history.events), "by_type": dict(sorted(kinds.items()))}
