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
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import Stack
from tests.support.transfers import FINAL, account, new_payer, sim_transfer, transfer_body
from tests.support.worker_crash import WorkerCrash

HELD_OPEN_S = 60  # far longer than the test: the request is still in flight at the SDK when the worker dies


def _body(payer: str) -> dict[str, Any]:
    """A payee of the test's own: a worker looks up one payee at a time (activities/payee_locks.py), so a lookup
    left hanging elsewhere cannot hold this one up."""
    return transfer_body(payer=payer, payee=f"2563{uuid.uuid4().int % 10**7:07d}", amount="10")


async def _wait_for_end(crash: WorkerCrash, request: str) -> dict[str, Any]:
    """Until the transfer is final (60 s at most); fails at once should the SDK receive `request` a second time."""
    deadline = time.monotonic() + 60
    while True:
        received = (await crash.sdk_requests())[request]
        assert received == 1, f"the SDK received {received} {request} for one transfer"
        view = await crash.view()
        if view.get("currentState") in FINAL:
            return view
        assert time.monotonic() < deadline, f"the transfer never ended; last seen {view.get('currentState')}"
        await asyncio.sleep(0.1)


async def test_worker_killed_during_the_party_lookup_sends_it_once(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    crash = await WorkerCrash.start(stack, http, _body(payer), partyLookupDelayS=HELD_OPEN_S)
    await crash.wait_until_the_sdk_holds("partyLookups")

    crash.kill_the_worker()

    done = await _wait_for_end(crash, "partyLookups")
    assert done["currentState"] == "ERROR_OCCURRED"
    assert done["lastError"]["code"] == "sdk_error"
    assert "no answer to the party lookup" in done["lastError"]["message"]
    assert await crash.sdk_requests() == {
        "homeTransactionId": crash.home_transaction_id,
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
    crash = await WorkerCrash.start(stack, http, _body(payer), acceptPartyDelayS=HELD_OPEN_S)
    await crash.wait_until_the_sdk_holds("partyAcceptances")

    killed_at = crash.kill_the_worker()

    done = await _wait_for_end(crash, "partyAcceptances")
    assert done["currentState"] == "ABORTED"
    assert done["lastError"]["code"] == "sdk_error"
    assert "no answer to the quote request" in done["lastError"]["message"]
    assert (datetime.fromisoformat(done["timestamps"]["finishedAt"]) - killed_at).total_seconds() >= 3
    assert await crash.sdk_requests() == {
        "homeTransactionId": crash.home_transaction_id,
        "partyLookups": 1,
        "partyAcceptances": 1,
    }
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 0
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
