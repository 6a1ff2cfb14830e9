"""Production runs the workflows unsandboxed (worker.py says why); here every history the test session made is
replayed through the sandbox, so a non-deterministic call or a changed command order fails the suite."""

from __future__ import annotations

import httpx
from temporalio.worker import Replayer

from mojaflow.codec import data_converter
from tests.conftest import Stack
from tests.support.transfers import money_movement_headers, new_payer, set_fault, transfer_body, wait_for_state
from worker import WORKFLOWS, workflow_runner


async def _make_varied_transfers(stack: Stack, http: httpx.AsyncClient) -> None:
    """At least one history of each outbound path, whatever else ran before."""
    payer, _ = await new_payer(http, stack.cbs_url, balance="100.00")
    url = f"{stack.api_url}/transfers"
    for overrides in ({}, {"amount": "600"}, {"amount": "500"}, {"amount": "150"}, {"payee": "25600000404"}):
        await http.post(url, json=transfer_body(payer=payer, **overrides), headers=money_movement_headers())
    manual = (
        await http.post(
            url,
            json=transfer_body(payer=payer, autoAcceptParty=False, autoAcceptQuote=False),
            headers=money_movement_headers(),
        )
    ).json()
    await http.put(f"{url}/{manual['transferId']}", json={"acceptParty": True}, headers=money_movement_headers())
    await http.put(f"{url}/{manual['transferId']}", json={"acceptQuote": False}, headers=money_movement_headers())
    body = transfer_body(payer=payer)
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], moneyStepAnswer="timeout", moneyStepDelayS=0.1)
    reconciled = (
        await http.post(url, json=body, headers={**money_movement_headers(), "Prefer": "respond-async"})
    ).json()
    await wait_for_state(http, stack.api_url, reconciled["transferId"], {"COMPLETED"})


async def test_every_history_replays_in_the_sandbox(stack: Stack, http: httpx.AsyncClient, payload_key: bytes) -> None:
    await _make_varied_transfers(stack, http)
    query = f"TaskQueue = '{stack.env['MOJAFLOW_TASK_QUEUE']}' AND ExecutionStatus != 'Running'"
    histories = stack.client.list_workflows(query, limit=300).map_histories()
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(sandboxed=True),
        data_converter=data_converter(payload_key),
    )

    replayed, failures = 0, {}
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            replayed += 1
            if result.replay_failure:
                failures[result.history.workflow_id] = repr(result.replay_failure)

    assert failures == {}
    assert replayed >= 7  # at least the transfers made above
