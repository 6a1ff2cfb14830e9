"""Money safety, second pass: an SDK that runs on by itself, answers that must be confirmed before a release,
fulfilments that must match the quote's condition, and holds that a person must be told about.

Each test drives the real stack (API, worker, Temporal, both simulators) and checks what a bank would: the
payer's balance and holds at the CBS, how many prepares reached the switch, and the transfer's final state.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from mojaflow.temporal import outbound_workflow_id
from tests.conftest import Stack
from tests.support.transfers import (
    account,
    money_movement_headers,
    new_payer,
    set_fault,
    sim_transfer,
    transfer_body,
    wait_for_state,
)

FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}


async def _run(stack: Stack, http: httpx.AsyncClient, body: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    response = await http.post(
        f"{stack.api_url}/transfers", json=body, headers={**money_movement_headers(), "Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    return await wait_for_state(http, stack.api_url, response.json()["transferId"], FINAL, timeout_s=timeout_s)


async def _balances(http: httpx.AsyncClient, stack: Stack, account_id: str) -> tuple[str, str]:
    balances = await account(http, stack.cbs_url, account_id)
    return balances["balance"], balances["held"]


@pytest.mark.parametrize("mode", ["quotes", "both"])
@pytest.mark.parametrize(
    ("outcome", "final", "balance"), [("COMMITTED", "COMPLETED", "990.00"), ("ABORTED", "ABORTED", "1000.00")]
)
async def test_an_sdk_that_runs_on_by_itself_debits_the_payer_exactly_when_the_switch_committed(
    stack: Stack, http: httpx.AsyncClient, mode: str, outcome: str, final: str, balance: str
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], autoAccept=mode, switchOutcome=outcome)

    done = await _run(stack, http, body)

    assert (done["currentState"], done["lastError"]["code"]) == (final, "sdk_misconfigured")
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 1
    assert await _balances(http, stack, account_id) == (balance, "0.00")


async def test_an_sdk_that_only_auto_accepts_the_party_ends_before_anything_is_held(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], autoAccept="party")

    done = await _run(stack, http, body)

    assert (done["currentState"], done["lastError"]["code"]) == ("ERROR_OCCURRED", "sdk_misconfigured")
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 0
    assert await _balances(http, stack, account_id) == ("1000.00", "0.00")


@pytest.mark.parametrize("answer", ["aborted_200", "fulfil_aborted", "error_callback"])
async def test_a_release_waits_for_a_get_that_does_not_contradict_it(
    stack: Stack, http: httpx.AsyncClient, answer: str
) -> None:
    """The money step's answer says no money moved, but the switch committed: the GET before the release
    finds out, and the payer is debited instead of released."""
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], moneyStepAnswer=answer, switchOutcome="COMMITTED")

    done = await _run(stack, http, body)

    assert done["currentState"] == "COMPLETED"
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 1
    assert await _balances(http, stack, account_id) == ("990.00", "0.00")


async def test_no_cached_data_is_reconciled_not_released(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], moneyStepAnswer="no_cached_data")

    done = await _run(stack, http, body)

    assert done["currentState"] == "COMPLETED"
    assert await _balances(http, stack, account_id) == ("990.00", "0.00")


@pytest.mark.parametrize("fulfilment", ["wrong", "other_transfer", "missing"])
async def test_a_commit_without_a_matching_fulfilment_is_never_settled(
    stack: Stack, http: httpx.AsyncClient, fulfilment: str
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], fulfilment=fulfilment)
    headers = money_movement_headers()
    response = await http.post(f"{stack.api_url}/transfers", json=body, headers={**headers, "Prefer": "respond-async"})
    transfer_id = response.json()["transferId"]
    await wait_for_state(http, stack.api_url, transfer_id, {"RECONCILING"})

    # The stack continues as new after 3 questions: once it has, the switch's COMMITTED was refused 3 times.
    handle = stack.client.get_workflow_handle(
        outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])
    )
    first_run = (await handle.describe()).run_id
    deadline = time.monotonic() + 30
    while (await handle.describe()).run_id == first_run:
        assert time.monotonic() < deadline, "the reconciliation never continued as new"
        await asyncio.sleep(0.2)

    still = await wait_for_state(http, stack.api_url, transfer_id, FINAL | {"RECONCILING"})
    assert still["currentState"] == "RECONCILING"
    assert await _balances(http, stack, account_id) == ("1000.00", "10.00")
