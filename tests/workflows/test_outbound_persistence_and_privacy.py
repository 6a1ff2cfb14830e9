"""What outlives Temporal, and what Temporal never sees in clear."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads

from api.codec_server import codec_router
from api.problems import install_problem_handlers
from mojaflow.codec import EncryptionCodec, load_payload_ring
from mojaflow.settings import Settings
from tests.conftest import ROOT, Stack
from tests.support.auth import register_client_api
from tests.support.process import ServerProcess, free_port
from tests.support.transfers import money_movement_headers, new_payer, transfer_body

UI_ORIGIN = "http://127.0.0.1:8233"


async def _completed_transfer(stack: Stack, http: httpx.AsyncClient, **overrides: object) -> tuple[dict, str]:
    key = money_movement_headers()
    response = await http.post(f"{stack.api_url}/transfers", json=transfer_body(**overrides), headers=key)
    assert response.status_code == 201, response.text
    return response.json(), f"outbound-bank1-{key['idempotent_request_key']}"


async def test_get_is_answered_from_our_database_without_any_history(stack: Stack, http: httpx.AsyncClient) -> None:
    """After Temporal's retention period the history is gone. (The dev server does not delete executions on
    demand, so we show the stronger property: an API whose Temporal is empty and unreachable still answers.)"""
    transfer, _ = await _completed_transfer(stack, http)
    port = free_port()
    env = {**stack.env, "MOJAFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "MOJAFLOW_CLIENT_API_PORT": str(port),
           "MOJAFLOW_BACKEND_API_PORT": str(free_port())}  # fmt: skip
    argv = [sys.executable, "-m", "api"]
    register_client_api(f"http://127.0.0.1:{port}", env)  # the test's requests carry keys of the stack's database
    with ServerProcess("api-without-temporal", argv, health_url=f"http://127.0.0.1:{port}/openapi.json", env=env,
                       cwd=str(ROOT), log_path=stack.data_dir / "api-without-temporal.log").start():  # fmt: skip
        health = await http.get(f"http://127.0.0.1:{port}/health")
        by_ours = await http.get(f"http://127.0.0.1:{port}/transfers/{transfer['transferId']}")
        by_sdk = await http.get(f"http://127.0.0.1:{port}/transfers/{transfer['sdkTransferId']}")

    assert health.status_code == 503
    assert "Temporal" in health.json()["reason"]
    assert by_ours.status_code == by_sdk.status_code == 200
    assert by_ours.json() == by_sdk.json() == transfer


async def test_no_personal_data_in_clear_in_the_history_or_search_attributes(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url, balance="5.00")  # too little: a failed activity too
    transfer, workflow_id = await _completed_transfer(stack, http, payer=payer, amount="10")
    assert transfer["lastError"]["code"] == "insufficient_funds"
    handle = stack.client.get_workflow_handle(workflow_id)

    history = (await handle.fetch_history()).to_json()
    description = await handle.describe()

    for secret in (payer, "25633333333", "Test Payer", "Test Payee", "insufficient_funds"):
        assert secret not in history
        assert base64.b64encode(secret.encode()).decode()[:-2] not in history
    assert (
        "binary/encrypted"
        in base64.b64decode(
            json.loads(history)["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0][
                "metadata"
            ]["encoding"]
        ).decode()
    )
    assert "Encoded failure" in history  # failure messages are encrypted too
    attributes = json.dumps({key.name: value for key, value in description.typed_search_attributes})
    assert payer not in attributes and "Test" not in attributes
    assert description.typed_search_attributes is not None


async def test_the_codec_endpoint_decodes_for_the_web_ui_only(stack: Stack, http: httpx.AsyncClient) -> None:
    transfer, workflow_id = await _completed_transfer(stack, http)
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    encrypted = history.events[0].workflow_execution_started_event_attributes.input
    body = json_format.MessageToJson(encrypted)

    from_ui = await http.post(f"{stack.api_url}/codec/decode", content=body, headers={"Origin": UI_ORIGIN})
    from_elsewhere = await http.post(f"{stack.api_url}/codec/decode", content=body)

    assert from_ui.status_code == 200
    assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN
    decoded = base64.b64decode(from_ui.json()["payloads"][0]["data"]).decode()
    assert transfer["transferId"] in decoded and "25633333333" in decoded
    assert from_elsewhere.status_code == 403
    preflight = await http.options(
        f"{stack.api_url}/codec/decode",
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_search_attributes_find_the_transfer(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    transfer, workflow_id = await _completed_transfer(stack, http, payer=payer)

    query = (
        f"HomeTransactionId = '{transfer['homeTransactionId']}' AND MojaflowState = 'COMPLETED' "
        f"AND SdkTransferId = '{transfer['sdkTransferId']}' AND ClientKey = 'bank1' AND Direction = 'OUTBOUND'"
    )
    deadline = time.monotonic() + 10
    while True:  # visibility is written after the history: a search may lag the completion by a moment
        found = [execution.id async for execution in stack.client.list_workflows(query)]
        if found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)

    assert found == [workflow_id]


async def test_the_state_is_indexed_where_a_search_needs_it(stack: Stack, http: httpx.AsyncClient) -> None:
    """`MojaflowState` is upserted where a transfer rests, where its money is in flight and at its end, not at the
    passing states: an auto transfer's history sets TRANSFERRING and COMPLETED only (RECEIVED came with the
    start); a manual transfer waiting for its party is found by that state."""
    _, workflow_id = await _completed_transfer(stack, http)
    handle = stack.client.get_workflow_handle(workflow_id)
    await handle.result()
    upserted = [
        json.loads(fields["MojaflowState"].data)
        for event in (await handle.fetch_history()).events
        if event.HasField("upsert_workflow_search_attributes_event_attributes")
        and "MojaflowState"
        in (fields := event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
    ]
    assert upserted == ["TRANSFERRING", "COMPLETED"]

    key = money_movement_headers()
    body = transfer_body(autoAcceptParty=False)
    waiting = await http.post(f"{stack.api_url}/transfers", json=body, headers=key)
    assert waiting.status_code == 201 and waiting.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    waiting_id = f"outbound-bank1-{key['idempotent_request_key']}"
    query = f"WorkflowId = '{waiting_id}' AND MojaflowState = 'WAITING_FOR_PARTY_ACCEPTANCE'"
    deadline = time.monotonic() + 30
    while not [execution async for execution in stack.client.list_workflows(query)]:  # visibility follows the task
        assert time.monotonic() < deadline, "the waiting transfer was never found by its state"
        await asyncio.sleep(0.1)
    declined = await http.put(
        f"{stack.api_url}/transfers/{waiting.json()['transferId']}", json={"acceptParty": False},
        headers=money_movement_headers(),
    )  # fmt: skip
    assert declined.status_code == 200, declined.text


async def test_no_party_id_in_any_log_line(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, _ = await new_payer(http, stack.cbs_url, balance="5.00")
    for overrides in ({"payer": payer}, {"payer": payer, "payee": "25600000404"}, {"payer": "25699999999"}):
        await _completed_transfer(stack, http, amount="10", **overrides)
    await http.get(f"{stack.backend_url}/parties/MSISDN/{payer}")

    logs = {path.name: path.read_text(errors="replace") for path in stack.data_dir.glob("*.log")}

    assert {"api.log", "worker.log"} <= set(logs)
    for name, text in logs.items():
        for party_id in (payer, "25633333333", "25600000404", "25699999999", "Test Payer", "Test Payee"):
            assert party_id not in text, f"{party_id} in {name}"


async def test_the_codec_endpoint_answers_only_on_this_machine(stack: Stack, tmp_path: Path) -> None:
    """Even when the client API listens on all interfaces for the CBS, plaintext is never served to another host.
    (A loopback test cannot come from another address: the app is called in process as if it had.)"""
    settings = Settings(data_dir=tmp_path, payload_key=SecretStr(stack.env["MOJAFLOW_PAYLOAD_KEY"]))
    codec = EncryptionCodec(load_payload_ring(settings))
    body = json_format.MessageToJson(Payloads(payloads=await codec.encode([Payload(data=b"25633333333")])))
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(codec_router(codec, [UI_ORIGIN]))

    answers = {}
    for host in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.7"):
        transport = httpx.ASGITransport(app=app, client=(host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://mojaflow") as client:
            answers[host] = await client.post("/codec/decode", content=body, headers={"Origin": UI_ORIGIN})

    assert [answers[host].status_code for host in answers] == [200, 200, 403, 403]
    assert answers["10.1.2.3"].json()["code"] == "codec_local_only"
    assert "25633333333" not in answers["10.1.2.3"].text
