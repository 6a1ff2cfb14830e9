"""A worker SIGKILLed while the party lookup or the party acceptance is in flight at the SDK.

Neither call moves money at a well-configured SDK, but a misconfigured one (auto-accept flags) runs on from either
into the prepare: so each is sent at most once, even across a crash, and a call left without an answer ends the
transfer without holding anything (after the party acceptance only once the switch proves no money moved).
Only what a caller and the simulators can see is asserted: not how the workflow runs these calls.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.conftest import Stack
from tests.support.transfers import (
    FINAL,
    account,
    new_payer,
    set_fault,
    sim_requests,
    sim_transfer,
    start_async,
    transfer_body,
)

HELD_OPEN_S = 60  # far longer than the test: the request is still in flight at the SDK when the worker dies


def _body(payer: str) -> dict[str, Any]:
    """A payee of the test's own: a worker looks up one payee at a time (activities/payee_locks.py), so a lookup
    left hanging elsewhere cannot hold this one up."""
    return transfer_body(payer=payer, payee=f"2563{uuid.uuid4().int % 10**7:07d}", amount="10")


async def _wait_for_arrival(http: httpx.AsyncClient, stack: Stack, home_transaction_id: str, request: str) -> None:
    """Until the SDK simulator has received `request` (partyLookups / partyAcceptances) for this transfer."""
    deadline = time.monotonic() + 20
    while (await sim_requests(http, stack.sdk_url, home_transaction_id))[request] < 1:
        assert time.monotonic() < deadline, f"the SDK never received the transfer's {request}"
        await asyncio.sleep(0.05)


async def _wait_for_end(
    http: httpx.AsyncClient, stack: Stack, transfer_id: str, home_transaction_id: str, request: str
) -> dict[str, Any]:
    """Until the transfer is final (60 s at most); fails at once should the SDK receive `request` a second time."""
    deadline = time.monotonic() + 60
    while True:
        received = (await sim_requests(http, stack.sdk_url, home_transaction_id))[request]
        assert received == 1, f"the SDK received {received} {request} for one transfer"
        view = (await http.get(f"{stack.api_url}/transfers/{transfer_id}")).json()
        if view.get("currentState") in FINAL:
            return view
        assert time.monotonic() < deadline, f"the transfer never ended; last seen {view.get('currentState')}"
        await asyncio.sleep(0.1)


def _restart_worker(stack: Stack) -> datetime:
    """SIGKILL the worker, start a new one; returns when the old one died."""
    stack.worker.kill()
    killed_at = datetime.now(UTC)
    stack.worker = stack.worker_process().start()
    return killed_at


async def test_worker_killed_during_the_party_lookup_sends_it_once(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = _body(payer)
    home = body["homeTransactionId"]
    await set_fault(http, stack.sdk_url, home, partyLookupDelayS=HELD_OPEN_S)
    transfer, _ = await start_async(http, stack.api_url, body)
    await _wait_for_arrival(http, stack, home, "partyLookups")

    _restart_worker(stack)

    done = await _wait_for_end(http, stack, transfer["transferId"], home, "partyLookups")
    assert done["currentState"] == "ERROR_OCCURRED"
    assert done["lastError"]["code"] == "sdk_error"
    assert "no answer to the party lookup" in done["lastError"]["message"]
    assert await sim_requests(http, stack.sdk_url, home) == {
        "homeTransactionId": home,
        "partyLookups": 1,
        "partyAcceptances": 0,
    }
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")


async def test_worker_killed_during_the_party_acceptance_sends_it_once(stack: Stack, http: httpx.AsyncClient) -> None:
    """Auto acceptance (the stack's default): `acceptParty` follows the lookup at once. Without its answer, the
    workflow cannot know whether the SDK ran on into a prepare: it asks the switch, and ends ABORTED only after
    the prepare's expiry plus grace (2 s + 1 s in the test stack) without the switch knowing the transfer."""
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = _body(payer)
    home = body["homeTransactionId"]
    await set_fault(http, stack.sdk_url, home, acceptPartyDelayS=HELD_OPEN_S)
    transfer, _ = await start_async(http, stack.api_url, body)
    await _wait_for_arrival(http, stack, home, "partyAcceptances")

    killed_at = _restart_worker(stack)

    done = await _wait_for_end(http, stack, transfer["transferId"], home, "partyAcceptances")
    assert done["currentState"] == "ABORTED"
    assert done["lastError"]["code"] == "sdk_error"
    assert "no answer to the quote request" in done["lastError"]["message"]
    assert (datetime.fromisoformat(done["timestamps"]["finishedAt"]) - killed_at).total_seconds() >= 3
    assert await sim_requests(http, stack.sdk_url, home) == {
        "homeTransactionId": home,
        "partyLookups": 1,
        "partyAcceptances": 1,
    }
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 0
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
