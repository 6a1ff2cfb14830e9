"""MOJAFLOW_LOG_FORMAT=json on the real stack: an API and a worker of their own (`Stack.sibling`) run whole
transfers, outbound (one completed, one refused by the CBS) and inbound (quoted, reserved, committed). Then, as a
log pipeline would read them: every line of both logs is one JSON object with its level, timestamp, logger and
event; every line of a transfer's work names its transferId, workflowId and runId; and no line holds a party id,
a name, an account id or a secret of the test's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from mojaflow.temporal import inbound_workflow_id, outbound_workflow_id
from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support import secret_scan
from tests.support.log_scan import json_lines, personal_data_in
from tests.support.transfers import (
    FINAL,
    money_movement_headers,
    new_payer,
    set_fault,
    transfer_body,
    wait_for_state,
)

PAYEE = "25633333333"  # the SDK simulator's "Test Payee"
REMOTE_PAYER = "25611111111"  # tests/inbound/flow.py: the inbound transfers' payer, "Remote Payer"
NAMES = ["Test Payer", "Test Payee", "Inbound Payee", "Remote Payer"]
LEVELS = {"debug", "info", "warning", "error", "critical"}


async def _outbound(ours: Stack, http: httpx.AsyncClient, payer: str, **fault: Any) -> tuple[dict[str, Any], str]:
    """A transfer from `payer` to the simulator's payee (with the SDK simulator's `fault`), awaited to its end:
    (its resource, its workflow id)."""
    headers = money_movement_headers()
    body = transfer_body(payer=payer, payee=PAYEE, amount="10")
    if fault:
        await set_fault(http, ours.sdk_url, body["homeTransactionId"], **fault)
    response = await http.post(f"{ours.api_url}/transfers", json=body, headers=headers)
    assert response.status_code in (201, 202), response.text
    transfer = await wait_for_state(http, ours.api_url, response.json()["transferId"], FINAL)
    return transfer, outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])


async def _inbound(ours: Stack, http: httpx.AsyncClient, msisdn_of: list[str]) -> str:
    """The SDK's calls for one inbound transfer, to its commit; the transfer's id."""
    payee = await new_payee(http, ours.cbs_url)
    msisdn_of.append(payee.msisdn)
    assert (await http.get(f"{ours.backend_url}/parties/MSISDN/{payee.msisdn}")).status_code == 200
    quote = await http.post(f"{ours.backend_url}/quoterequests", json=quote_request(payee, "25"))
    assert quote.status_code == 200, quote.text
    reserved = await http.post(f"{ours.backend_url}/transfers", json=transfer_request(payee, quote.json()))
    assert reserved.status_code == 200, reserved.text
    transfer_id = str(quote.json()["transactionId"])
    await switch_records(http, ours.sdk_url, transfer_id, "COMMITTED")
    notified = await http.put(
        f"{ours.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert notified.status_code == 200, notified.text
    done = await wait_for_state(
        http, ours.api_url, transfer_id, {"COMMITTED", "COMPLETED", "ABORTED", "ERROR_OCCURRED"}
    )
    assert done["currentState"] in ("COMMITTED", "COMPLETED"), done
    return transfer_id


def _well_formed(name: str, lines: list[dict[str, Any]]) -> None:
    for number, line in enumerate(lines, 1):
        where = f"{name}:{number} {line}"
        assert line.get("level") in LEVELS, where
        assert isinstance(line.get("logger"), str) and line["logger"], where
        assert isinstance(line.get("event"), str), where
        assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None, where


async def test_json_logs_name_each_transfer_and_hold_no_personal_data(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    party_ids: list[str] = [PAYEE, REMOTE_PAYER]
    # a short SDK timeout: the lost answer of the third transfer's money step is waited for in real time
    with stack.sibling(tmp_path, MOJAFLOW_LOG_FORMAT="json", MOJAFLOW_SDK_TIMEOUT_S="3") as ours:
        payers = [await new_payer(http, stack.cbs_url, balance=balance) for balance in ("1000.00", "5.00", "1000.00")]
        party_ids += [value for payer in payers for value in payer]  # the MSISDNs and the account ids
        completed, completed_workflow = await _outbound(ours, http, payers[0][0])
        refused, refused_workflow = await _outbound(ours, http, payers[1][0])  # too little money: the CBS refuses
        reconciled, reconciled_workflow = await _outbound(ours, http, payers[2][0], moneyStepAnswer="hang")
        inbound_id = await _inbound(ours, http, party_ids)
    # both processes stopped: their logs are whole

    assert completed["currentState"] == reconciled["currentState"] == "COMPLETED"
    assert (refused["currentState"], refused["lastError"]["code"]) == ("ABORTED", "insufficient_funds")
    logs = {name: tmp_path / name for name in ("api.log", "worker.log")}
    lines = {name: json_lines(path) for name, path in logs.items()}
    for name, parsed in lines.items():
        _well_formed(name, parsed)

    transfers = {
        completed["transferId"]: completed_workflow,
        refused["transferId"]: refused_workflow,
        reconciled["transferId"]: reconciled_workflow,
        inbound_id: inbound_workflow_id(inbound_id),
    }
    worker, api = lines["worker.log"], lines["api.log"]
    states = [line for line in worker if line["event"].startswith("transfer state ")]
    for transfer_id, workflow_id in transfers.items():
        # the worker: each state the transfer entered, on a line naming the transfer, its workflow and run
        its_states = [line for line in states if line.get("transferId") == transfer_id]
        assert {(line["workflowId"], bool(line.get("runId"))) for line in its_states} == {(workflow_id, True)}
        # every line of the transfer's work (its workflow's, its activities') names the transfer and the run,
        # and every line that names the transfer or its workflow is one of them
        work = [line for line in worker if line.get("workflowId") == workflow_id]
        assert all(line.get("transferId") == transfer_id and line.get("runId") for line in work), work
        mentions = [line for line in worker if transfer_id in str(line) or workflow_id in str(line)]
        assert mentions == work
        # the API: its requests about the transfer (the POST that made it, the GETs and PUTs that named it)
        about = [line for line in api if transfer_id in str(line)]
        assert about and all(line.get("transferId") == transfer_id for line in about), about
    last_state = {line["transferId"]: line["event"].removeprefix("transfer state ") for line in states}
    assert last_state == {
        completed["transferId"]: "COMPLETED",
        refused["transferId"]: "ABORTED",
        reconciled["transferId"]: "COMPLETED",
        inbound_id: "COMMITTED",
    }
    assert "RECONCILING" in [line["event"].removeprefix("transfer state ") for line in states
                             if line["transferId"] == reconciled["transferId"]]  # fmt: skip
    # an activity's own line: the money step whose answer was lost, with the transfer it belongs to
    [lost] = [line for line in worker if "may have left" in line["event"]]
    assert (lost["level"], lost["transferId"], lost["workflowId"]) == ("warning", reconciled["transferId"],
                                                                         reconciled_workflow)  # fmt: skip
    assert lost["activityType"] and lost["runId"] and lost["attempt"] == 1

    assert personal_data_in(logs.values(), [*party_ids, *NAMES]) == []
    scanner = secret_scan.Scanner(secrets=dict(secret_scan.SESSION.secrets))  # the API keys, the payload key
    for path in logs.values():
        scanner.remember_log(path)
    assert scanner.findings() == []
    assert len(scanner.secrets) >= 2 and scanner.searched_logs == 2
