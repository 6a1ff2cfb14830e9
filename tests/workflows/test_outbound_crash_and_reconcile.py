"""The money step under failure: a worker SIGKILLed mid-step, a 504, a prepare the switch never saw.

Money must move at most once: exactly one prepare, the hold committed only on COMMITTED and released only on
proof that no money moved.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import pytest

from tests.conftest import Stack
from tests.support.transfers import (
    account,
    new_payer,
    set_fault,
    sim_transfer,
    start_async,
    transfer_body,
    wait_for_state,
)
from tests.support.worker_crash import WorkerCrash


@pytest.mark.parametrize(
    ("switch_outcome", "final_state", "balance"),
    [("COMMITTED", "COMPLETED", "990.00"), ("ABORTED", "ABORTED", "1000.00")],
)
async def test_worker_killed_during_the_money_step(
    stack: Stack, http: httpx.AsyncClient, switch_outcome: str, final_state: str, balance: str
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    crash = await WorkerCrash.start(stack, http, body, moneyStepDelayS=60, switchOutcome=switch_outcome)
    await crash.wait_until_the_sdk_holds_the_money_step()
    assert (await account(http, stack.cbs_url, account_id))["held"] == "10.00"

    crash.kill_the_worker()

    done = await crash.wait_for_state({final_state}, timeout_s=60)
    if final_state == "ABORTED":
        assert done["lastError"]["code"] == "transfer_aborted"
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == (balance, "0.00")


async def test_a_504_on_the_money_step_reconciles_until_the_switch_decides(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """The switch says RESERVED for a while: the test stack continues as new after 3 questions
    (MOJAFLOW_RECONCILE_CHECKS_PER_RUN), so the reconciliation also goes on across runs."""
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(
        http, stack.sdk_url, body["homeTransactionId"], moneyStepAnswer="timeout", moneyStepDelayS=0.2,
        switchOutcome="RESERVED",
    )  # fmt: skip
    transfer, _ = await start_async(http, stack.api_url, body)

    reconciling = await wait_for_state(http, stack.api_url, transfer["transferId"], {"RECONCILING"})
    assert (await account(http, stack.cbs_url, account_id))["held"] == "10.00"  # not released: maybe it moved
    runs = f"HomeTransactionId = '{body['homeTransactionId']}'"
    deadline = time.monotonic() + 30
    while (await stack.client.count_workflows(runs)).count < 3:  # two continued runs, one running
        assert time.monotonic() < deadline, "the reconciliation never continued as new"
        await asyncio.sleep(0.2)
    assert (await http.get(f"{stack.api_url}/transfers/{transfer['transferId']}")).json()["currentState"] == (
        "RECONCILING"
    )
    switch = await http.put(
        f"{stack.sdk_url}/_sim/switch/{reconciling['sdkTransferId']}", json={"transferState": "COMMITTED"}
    )
    switch.raise_for_status()

    done = await wait_for_state(http, stack.api_url, transfer["transferId"], {"COMPLETED"})
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("990.00", "0.00")


async def test_a_prepare_the_switch_never_saw_is_released_only_after_its_expiry(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], prepareLost=True, moneyStepDelayS=0.2)
    transfer, _ = await start_async(http, stack.api_url, body)

    done = await wait_for_state(http, stack.api_url, transfer["transferId"], {"ABORTED", "COMPLETED"})

    assert done["currentState"] == "ABORTED"
    assert done["lastError"] == {
        "code": "transfer_not_found",
        "message": done["lastError"]["message"],
        "fspiopErrorCode": "3208",
    }
    # Expiry (2 s in the test stack) plus grace (1 s) after the money step was sent, not before.
    sent = done["timestamps"]["transferSentAt"]
    finished = done["timestamps"]["finishedAt"]
    elapsed = datetime.fromisoformat(finished) - datetime.fromisoformat(sent)
    assert elapsed.total_seconds() >= 3
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")
