"""`temporal workflow cancel` on a transfer: before the money step nothing can have moved, so the transfer ends
ABORTED with nothing held; once the prepare may have left, the cancel changes nothing about the money: the
transfer is settled as the switch decided, the payer debited exactly once."""

from __future__ import annotations

import httpx

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


async def _cancel(stack: Stack, workflow_id: str) -> None:
    await stack.client.get_workflow_handle(workflow_id).cancel()


async def test_a_cancel_while_waiting_for_the_party_ends_aborted_with_nothing_held(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer, workflow_id = await start_async(http, stack.api_url, transfer_body(payer=payer, autoAcceptParty=False))
    await wait_for_state(http, stack.api_url, transfer["transferId"], {"WAITING_FOR_PARTY_ACCEPTANCE"})

    await _cancel(stack, workflow_id)

    done = await wait_for_state(http, stack.api_url, transfer["transferId"], {"ABORTED"})
    assert done["lastError"]["code"] == "cancelled"
    assert (await account(http, stack.cbs_url, account_id))["held"] == "0.00"


async def test_a_cancel_during_the_money_step_still_settles_as_the_switch_decided(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], moneyStepDelayS=3, switchOutcome="COMMITTED")
    transfer, workflow_id = await start_async(http, stack.api_url, body)
    await wait_for_state(http, stack.api_url, transfer["transferId"], {"TRANSFERRING"})

    await _cancel(stack, workflow_id)

    done = await wait_for_state(http, stack.api_url, transfer["transferId"], {"COMPLETED"}, timeout_s=60)
    assert (await sim_transfer(http, stack.sdk_url, done["sdkTransferId"]))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
