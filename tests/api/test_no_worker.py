"""No worker polling (a crash, a deploy): every answer is bounded and none invites a second payment.

A CBS that reads a 500 as "failed" retries with a new key and pays twice; an SDK that reads it so aborts a
transfer we may reserve. With the worker stopped, `POST /transfers` answers 202 + Location, the backend API's
`POST /transfers` answers 503/2003, and `PUT /transfers/{id}` answers within its wait; once a worker is back,
the same transfers go on and complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from decimal import Decimal

import httpx

from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state

WAIT_S = 2
# Prefer: wait=2 plus the API's own margins (rpc_timeout wait+1 / wait+5, an overall timeout one second later)
# and a little for a loaded machine.
POST_BOUND_S = WAIT_S + 2 + 3
PUT_BOUND_S = WAIT_S + 6 + 3
# The backend waits MOJAFLOW_INBOUND_RESERVATION_WAIT_S (default 20 s) for the reservation, + 2 s margin.
BACKEND_BOUND_S = 20 + 2 + 3


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_without_a_worker_answers_are_bounded_and_transfers_complete_later(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    # Prepared while a worker runs: a transfer waiting for the CBS's party decision, and an inbound quote.
    payer, _ = await new_payer(http, stack.cbs_url)
    manual = transfer_body(payer=payer, amount="3", autoAcceptParty=False)
    started = await http.post(
        f"{stack.api_url}/transfers", json=manual, headers={**money_movement_headers(), "Prefer": "wait=15"}
    )
    assert started.status_code == 201, started.text
    waiting = started.json()
    assert waiting["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    payee = await new_payee(http, stack.cbs_url)
    quote = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, "4"))
    assert quote.status_code == 200, quote.text
    inbound = transfer_request(payee, quote.json())

    stack.worker.stop()
    try:
        (post, post_s), (backend, backend_s), (put, put_s) = await asyncio.gather(
            _timed(
                http.post(
                    f"{stack.api_url}/transfers",
                    json=transfer_body(payer=payer, amount="2"),
                    headers={**money_movement_headers(), "Prefer": f"wait={WAIT_S}"},
                )
            ),
            _timed(http.post(f"{stack.backend_url}/transfers", json=inbound)),
            _timed(
                http.put(
                    f"{stack.api_url}/transfers/{waiting['transferId']}",
                    json={"acceptParty": True},
                    headers={**money_movement_headers(), "Prefer": f"wait={WAIT_S}"},
                )
            ),
        )
    finally:
        stack.worker = stack.worker_process().start()

    assert post.status_code == 202, post.text
    assert post_s < POST_BOUND_S, post_s
    outbound = post.json()
    assert post.headers["location"] == f"/transfers/{outbound['transferId']}"
    assert outbound["currentState"] == "RECEIVED"

    assert backend.status_code == 503, backend.text
    assert backend_s < BACKEND_BOUND_S, backend_s
    assert backend.json() == {"statusCode": "2003", "message": backend.json()["message"]}

    assert put.status_code == 202, put.text
    assert put_s < PUT_BOUND_S, put_s
    assert put.headers["location"] == f"/transfers/{waiting['transferId']}"
    assert put.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"

    # A worker is back: the transfer saved during the outage runs, and the decision that was delivered counts.
    finals = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}
    done = await wait_for_state(http, stack.api_url, outbound["transferId"], finals, timeout_s=60)
    assert done["currentState"] == "COMPLETED", done
    decided = await wait_for_state(http, stack.api_url, waiting["transferId"], finals, timeout_s=60)
    assert decided["currentState"] == "COMPLETED", decided

    # Inbound: the workflow started during the outage reserves; the SDK's retry finds it, then it commits once.
    retried = await http.post(f"{stack.backend_url}/transfers", json=inbound)
    assert retried.status_code == 200, retried.text
    assert retried.json()["transferState"] == "RESERVED"
    transfer_id = inbound["transferId"]
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")  # the switch decided; the SDK relays it
    committed = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert committed.status_code == 200, committed.text
    await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED"}, timeout_s=30)
    assert await payee.balances(http, stack.cbs_url) == (Decimal("104"), Decimal("0"))
