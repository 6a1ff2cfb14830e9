"""The worker killed while a CBS call of an inbound transfer is in flight (the CBS simulator holds the call for a
few seconds, then does it once, as a slow CBS would): a new worker repeats the call, the CBS's idempotency key
makes the repeat harmless, and the payee is credited exactly once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx

from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.transfers import wait_for_state

FINAL = {"COMMITTED", "ABORTED", "ERROR_OCCURRED"}


async def _calls(http: httpx.AsyncClient, stack: Stack, operation: str) -> int:
    response = await http.get(f"{stack.cbs_url}/_sim/calls")
    response.raise_for_status()
    return int(response.json()[operation])


async def _slow_down(http: httpx.AsyncClient, stack: Stack, operation: str) -> int:
    """Holds the next call of `operation` for 3 s; returns the call count before it."""
    before = await _calls(http, stack, operation)
    response = await http.put(
        f"{stack.cbs_url}/_sim/faults/{operation}", json={"mode": "slow", "delayS": 3, "times": 1}
    )
    response.raise_for_status()
    return before


async def _wait_for_call(http: httpx.AsyncClient, stack: Stack, operation: str, before: int) -> None:
    deadline = time.monotonic() + 20
    while await _calls(http, stack, operation) <= before:
        assert time.monotonic() < deadline, f"the CBS never saw {operation}"
        await asyncio.sleep(0.05)


def _restart_worker(stack: Stack) -> None:
    stack.worker.kill()
    stack.worker = stack.worker_process().start()


async def test_worker_killed_while_the_reservation_is_in_flight_credits_once(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = (await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, "12"))).json()
    transfer_id = quote["transactionId"]
    before = await _slow_down(http, stack, "reserve_credit")
    posting = asyncio.create_task(http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote)))
    await _wait_for_call(http, stack, "reserve_credit", before)

    _restart_worker(stack)
    await posting  # answered or not in time: the SDK would be told by the switch either way
    await wait_for_state(http, stack.api_url, transfer_id, {"RESERVED"})
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")
    response = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert response.status_code == 200, response.text

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("112"), Decimal("0"))


async def test_worker_killed_while_the_commit_is_in_flight_credits_once(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = (await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, "12"))).json()
    transfer_id = quote["transactionId"]
    response = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote))
    assert response.status_code == 200, response.text
    before = await _slow_down(http, stack, "commit_credit")
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")
    response = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert response.status_code == 200, response.text
    await _wait_for_call(http, stack, "commit_credit", before)

    _restart_worker(stack)

    done = await wait_for_state(http, stack.api_url, transfer_id, FINAL)
    assert done["currentState"] == "COMMITTED"
    assert await _calls(http, stack, "commit_credit") >= before + 2  # the killed call, and the new worker's
    assert await payee.balances(http, stack.cbs_url) == (Decimal("112"), Decimal("0"))
