"""`PUT /transfers/{id}` is idempotent both ways: a retry with the same key delivers a decision that never reached
the workflow, and replays one that did, whatever failed in between (an API that died after claiming the key, an
answer lost to a timeout, a run that continued as new or finished). The decision is taken exactly once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType

from api.idempotency import decision_fingerprint, decision_route, keyed_fingerprint
from mojaflow.database import Database
from mojaflow.keys import load_party_hash_ring
from mojaflow.models import AcceptanceDecision
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
from tests.support.workers import settings_of

MANUAL = {"autoAcceptParty": False, "autoAcceptQuote": False}
PARTY = {"acceptParty": True}
QUOTE = {"acceptQuote": True}


async def _start_manual(api_url: str, http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A transfer waiting for the CBS to accept the payee, and its workflow id."""
    headers = money_movement_headers()
    response = await http.post(f"{api_url}/transfers", json=body, headers={**headers, "Prefer": "wait=15"})
    assert response.status_code == 201, response.text
    assert response.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    return response.json(), outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])


async def _decide(
    http: httpx.AsyncClient, api_url: str, transfer_id: str, body: dict[str, Any], key: str, prefer: str = "wait=15"
) -> httpx.Response:
    headers = {**money_movement_headers(key), "Prefer": prefer}
    return await http.put(f"{api_url}/transfers/{transfer_id}", json=body, headers=headers)


async def _decisions_accepted(stack: Stack, workflow_id: str) -> list[str]:
    """The ids of the decision updates the workflow's latest run accepted, from its Temporal history."""
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        event.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        in ("accept_party", "accept_quote")
    ]


def _taken(transfer: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return [(d["state"], d["accepted"], d["updateId"]) for d in transfer["decisions"]]


async def test_a_claim_left_by_a_crashed_api_is_delivered_on_retry(stack: Stack, http: httpx.AsyncClient) -> None:
    """The API died between claiming the key and delivering the update: the row it left is all there is."""
    payer, account_id = await new_payer(http, stack.cbs_url)
    transfer, _ = await _start_manual(stack.api_url, http, transfer_body(payer=payer, amount="7", **MANUAL))
    transfer_id, key = transfer["transferId"], "crashed-after-claim-" + transfer["transferId"][:8]
    database = Database(f"sqlite+aiosqlite:///{Path(stack.data_dir).resolve() / 'mojaflow.db'}")
    try:  # what claim_idempotency_key wrote before the crash, exactly as the API writes it
        claim = await database.claim_idempotency_key(
            client_key="bank1",
            method="PUT",
            route=decision_route(transfer_id),
            key=key,
            request_hash=keyed_fingerprint(
                load_party_hash_ring(settings_of(stack.env)).primary,
                decision_fingerprint(**AcceptanceDecision.model_validate(PARTY).model_dump(exclude={"wait_s"})),
            ),
            transfer_id=transfer_id,
        )
    finally:
        await database.close()
    assert claim.created
    other_body = await _decide(http, stack.api_url, transfer_id, {"acceptParty": False}, key)
    assert other_body.status_code == 422, other_body.text  # the API sees the crashed request's claim

    retried = await _decide(http, stack.api_url, transfer_id, PARTY, key)

    assert retried.status_code == 200, retried.text
    assert retried.headers["idempotent-replayed"] == "true"  # a request already made with this key
    assert retried.json()["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
    assert _taken(retried.json()) == [("WAITING_FOR_PARTY_ACCEPTANCE", True, f"decision-bank1-{key}")]
    done = await _decide(http, stack.api_url, transfer_id, QUOTE, key + "-quote")
    assert done.status_code == 200, done.text
    assert done.json()["currentState"] == "COMPLETED"
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("993.00", "0.00")


async def test_a_decision_whose_answer_was_lost_is_replayed_not_refused(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """No worker: the update waits at Temporal and the PUT (and its retry) answer 202. Once a worker is back, a
    retry with the same key answers 200 with the decision taken, and it was applied once. A sibling API with a long
    acceptance timeout, so the worker's absence does not end the transfer first."""
    with stack.sibling(tmp_path, MOJAFLOW_ACCEPTANCE_TIMEOUT_S="120") as sibling:
        payer, account_id = await new_payer(http, stack.cbs_url)
        transfer, workflow_id = await _start_manual(sibling.api_url, http, transfer_body(payer=payer, **MANUAL))
        transfer_id, key = transfer["transferId"], "lost-answer-" + transfer["transferId"][:8]

        sibling.worker.stop()
        worker = None
        try:
            # The CBS gives up early and retries while the first request still waits: both wait for the update.
            pending = await asyncio.gather(
                *(_decide(http, sibling.api_url, transfer_id, PARTY, key, prefer="wait=1") for _ in range(2))
            )
            for response in pending:
                assert response.status_code == 202, response.text
                assert response.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
            worker = sibling.worker_process().start()

            # At once: the first delivery may still be in flight, or (Temporal keeps an update only once a worker
            # accepted it) lost; either way the retry answers with the decision taken, after the wait asked for.
            retried = await _decide(http, sibling.api_url, transfer_id, PARTY, key)
            another_key = await _decide(http, sibling.api_url, transfer_id, PARTY, key + "-2")

            assert retried.status_code == 200, retried.text
            assert retried.headers["idempotent-replayed"] == "true"
            assert retried.json()["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
            assert retried.json()["quote"]["transferAmount"] == "10"
            assert _taken(retried.json()) == [("WAITING_FOR_PARTY_ACCEPTANCE", True, f"decision-bank1-{key}")]
            assert another_key.status_code == 409, another_key.text
            assert another_key.json()["code"] == "invalid_state"
            assert await _decisions_accepted(stack, workflow_id) == [f"decision-bank1-{key}"]  # applied once

            done = await _decide(http, sibling.api_url, transfer_id, QUOTE, key + "-quote")
            assert done.json()["currentState"] == "COMPLETED", done.text
            balances = await account(http, stack.cbs_url, account_id)
            assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
        finally:
            if worker is not None:
                worker.stop()


async def test_retries_after_success_replay_and_other_keys_are_refused(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer, workflow_id = await _start_manual(stack.api_url, http, transfer_body(payer=payer, **MANUAL))
    transfer_id, key = transfer["transferId"], "after-success-" + transfer["transferId"][:8]
    first = await _decide(http, stack.api_url, transfer_id, PARTY, key)
    assert first.status_code == 200, first.text

    replay = await _decide(http, stack.api_url, transfer_id, PARTY, key)
    other_key = await _decide(http, stack.api_url, transfer_id, PARTY, key + "-2")
    other_body = await _decide(http, stack.api_url, transfer_id, QUOTE, key)

    assert replay.status_code == 200, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert replay.json() == first.json()
    assert _taken(replay.json()) == [("WAITING_FOR_PARTY_ACCEPTANCE", True, f"decision-bank1-{key}")]
    assert other_key.status_code == 409, other_key.text
    assert other_key.json()["code"] == "invalid_state"
    assert other_body.status_code == 422, other_body.text
    assert other_body.json()["code"] == "idempotency_key_reused"
    assert await _decisions_accepted(stack, workflow_id) == [f"decision-bank1-{key}"]

    declined = await _decide(http, stack.api_url, transfer_id, {"acceptQuote": False}, key + "-quote")
    assert declined.json()["currentState"] == "ABORTED", declined.text
    after_the_end = await _decide(http, stack.api_url, transfer_id, {"acceptQuote": False}, key + "-quote")
    assert after_the_end.status_code == 200, after_the_end.text
    assert after_the_end.headers["idempotent-replayed"] == "true"
    assert after_the_end.json()["currentState"] == "ABORTED"
    assert _taken(after_the_end.json())[-1] == ("WAITING_FOR_QUOTE_ACCEPTANCE", False, f"decision-bank1-{key}-quote")


async def test_a_retry_after_the_run_continued_as_new_is_a_replay(stack: Stack, http: httpx.AsyncClient) -> None:
    """The new run does not know the first run's update ids (its validator refuses a decision): the saved
    `decisions` tell the API that this key's decision was taken, in a later run and once the transfer is over."""
    payer, account_id = await new_payer(http, stack.cbs_url)
    body = transfer_body(payer=payer, amount="10", **MANUAL)
    await set_fault(
        http, stack.sdk_url, body["homeTransactionId"], moneyStepAnswer="timeout", moneyStepDelayS=0.2,
        switchOutcome="RESERVED",
    )  # fmt: skip
    transfer, workflow_id = await _start_manual(stack.api_url, http, body)
    transfer_id, key = transfer["transferId"], "continued-" + transfer["transferId"][:8]
    assert (await _decide(http, stack.api_url, transfer_id, PARTY, key + "-party")).status_code == 200
    sent = await _decide(http, stack.api_url, transfer_id, QUOTE, key, prefer="respond-async")
    assert sent.status_code == 202, sent.text
    reconciling = await wait_for_state(http, stack.api_url, transfer_id, {"RECONCILING"})
    runs = f"WorkflowId = '{workflow_id}'"
    deadline = time.monotonic() + 30
    while (await stack.client.count_workflows(runs)).count < 2:  # one continued run, one running
        assert time.monotonic() < deadline, "the reconciliation never continued as new"
        await asyncio.sleep(0.2)

    during = await _decide(http, stack.api_url, transfer_id, QUOTE, key)
    other_key = await _decide(http, stack.api_url, transfer_id, QUOTE, key + "-2")

    assert during.status_code == 200, during.text
    assert during.headers["idempotent-replayed"] == "true"
    assert during.json()["currentState"] == "RECONCILING"
    assert _taken(during.json()) == [
        ("WAITING_FOR_PARTY_ACCEPTANCE", True, f"decision-bank1-{key}-party"),
        ("WAITING_FOR_QUOTE_ACCEPTANCE", True, f"decision-bank1-{key}"),
    ]
    assert other_key.status_code == 409, other_key.text
    switch = await http.put(
        f"{stack.sdk_url}/_sim/switch/{reconciling['sdkTransferId']}", json={"transferState": "COMMITTED"}
    )
    switch.raise_for_status()
    await wait_for_state(http, stack.api_url, transfer_id, {"COMPLETED"})

    after_the_end = await _decide(http, stack.api_url, transfer_id, QUOTE, key)

    assert after_the_end.status_code == 200, after_the_end.text
    assert after_the_end.headers["idempotent-replayed"] == "true"
    assert after_the_end.json()["currentState"] == "COMPLETED"
    assert (await sim_transfer(http, stack.sdk_url, reconciling["sdkTransferId"]))["prepareCount"] == 1
    balances = await account(http, stack.cbs_url, account_id)
    assert (balances["balance"], balances["held"]) == ("990.00", "0.00")
