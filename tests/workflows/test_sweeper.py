"""The stuck-transfer sweeper on the real stack (Temporal dev server, CBS and SDK simulators, our worker, API and
database): it finds planted trouble, leaves healthy transfers alone, and `mojaflow transfers stuck` prints it.

Planted: a hold that landed at the CBS for a transfer that had already ended, a hold for a transfer we never
had, a transfer in progress in our database whose workflow has ended (its last saves lost), and one whose workflow
Temporal never had. (A workflow terminated by an operator is the same case to the sweeper, Temporal's status
TERMINATED; the session forbids terminated workflows, and deleting one again is not prompt on a loaded server.)
Healthy: a COMPLETED transfer (its hold committed) and a RECONCILING one (its hold HELD, its workflow
running). The stack's sweeper grace is 2 s (tests/support/stack.py), so sweeps run on demand (`--now`) until the
planted trouble is old enough to be reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mojaflow.database import Database
from mojaflow.models import Direction, TransferRecord, TransferState, TransferView
from mojaflow.temporal import outbound_workflow_id
from tests.conftest import ROOT, Stack
from tests.support.transfers import (
    FINAL,
    money_movement_headers,
    new_payer,
    set_fault,
    start_async,
    transfer_body,
    wait_for_state,
)
from tests.support.workers import settings_of

Report = dict[str, Any]


def stuck(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "transfers", "stuck", *args],
        env={**os.environ, **stack.env}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def sweep_until(stack: Stack, found: Callable[[Report], bool], timeout_s: float = 60) -> Report:
    """`stuck --now --json` until a sweep's report satisfies `found`; fail with the last one."""
    deadline = time.monotonic() + timeout_s
    report: Report = {}
    while time.monotonic() < deadline:
        run = await asyncio.to_thread(stuck, stack, "--now", "--json")
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        if found(report):
            return report
    raise AssertionError(f"no sweep found what was planted; the last report: {json.dumps(report, indent=2)}")


def our_records(log_path: Path) -> list[dict[str, Any]]:
    """The session worker's JSON lines so far. Temporal's core writes its own warnings to the same stderr in its own
    format (an activity completing after its workflow ended, in another test): those are skipped."""
    text = log_path.read_text(errors="replace")
    complete = text[: text.rfind("\n") + 1]  # a line still being written is left out
    return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


def findings(report: Report) -> list[dict[str, Any]]:
    return [*report["holds"]["findings"], *report["transfers"]["findings"]]


def by_hold(report: Report) -> dict[str, dict[str, Any]]:
    return {f["holdId"]: f for f in findings(report) if f["kind"] == "ORPHAN_HOLD"}


def by_transfer(report: Report, kind: str) -> dict[str, dict[str, Any]]:
    return {f["transferId"]: f for f in findings(report) if f["kind"] == kind}


async def hold_at_cbs(http: httpx.AsyncClient, stack: Stack, key: str, account_id: str, amount: str) -> str:
    """A hold placed at the CBS directly, as a late or foreign `POST /holds` would."""
    body = {"holdKey": key, "accountId": account_id, "amount": amount, "currency": "USD"}
    response = await http.post(f"{stack.cbs_url}/holds", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["holdId"])


async def hold_status(http: httpx.AsyncClient, stack: Stack, hold_id: str) -> str:
    return str((await http.get(f"{stack.cbs_url}/holds/{hold_id}")).json()["status"])


async def in_progress_in_our_database(stack: Stack, state: TransferState, workflow_id: str | None = None) -> str:
    """A transfer our database has in `state` (not final), under `workflow_id`: by default one Temporal never had
    (the API saved RECEIVED and died before the start, say), or one that has ended (a database restored from a
    backup older than the transfer's last saves)."""
    database = Database(settings_of(stack.env).resolved_database_url)
    transfer_id = str(uuid.uuid4())
    view = TransferView(
        transfer_id=transfer_id, direction=Direction.OUTBOUND, current_state=state, currency="USD", amount="12",
    )  # fmt: skip
    try:
        record = TransferRecord(
            view=view, revision=0, workflow_id=workflow_id or f"outbound-never-{transfer_id}", client_key="swp"
        )
        assert await database.save_transfer(record)
    finally:
        await database.close()
    return transfer_id


async def test_the_sweeper_reports_planted_trouble_and_nothing_healthy(stack: Stack, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, stack.cbs_url)

    # Healthy: completed, its hold committed.
    response = await http.post(
        f"{stack.api_url}/transfers", json=transfer_body(payer=payer, amount="10"), headers=money_movement_headers()
    )
    completed = await wait_for_state(http, stack.api_url, response.json()["transferId"], {"COMPLETED"})
    assert await hold_status(http, stack, completed["holdId"]) == "COMMITTED"

    # Healthy: reconciling (the switch's fulfilment never matches), its hold HELD, its workflow running.
    reconciling_body = transfer_body(payer=payer, amount="11")
    await set_fault(http, stack.sdk_url, reconciling_body["homeTransactionId"], fulfilment="wrong")
    started, _ = await start_async(http, stack.api_url, reconciling_body)
    reconciling = await wait_for_state(http, stack.api_url, started["transferId"], {"RECONCILING"})
    assert await hold_status(http, stack, reconciling["holdId"]) == "HELD"

    # Planted: a hold that lands after its transfer ended (the payee rejected the quote: nothing was held).
    ended_headers = money_movement_headers()
    response = await http.post(
        f"{stack.api_url}/transfers", json=transfer_body(payer=payer, amount="500"), headers=ended_headers
    )
    aborted = await wait_for_state(http, stack.api_url, response.json()["transferId"], FINAL)
    assert aborted.get("holdId") is None
    late_hold = await hold_at_cbs(http, stack, f"{aborted['transferId']}-hold", account_id, "500")
    # Planted: a hold for a transfer we never had.
    stranger = str(uuid.uuid4())
    stranger_hold = await hold_at_cbs(http, stack, f"{stranger}-hold", account_id, "7.25")

    # Planted: in progress in our database, its workflow ended (the ended transfer's, above); and one that
    # Temporal never had.
    ended_workflow = outbound_workflow_id(ended_headers["client_key"], ended_headers["idempotent_request_key"])
    workflow_ended = await in_progress_in_our_database(stack, TransferState.RECONCILING, ended_workflow)
    never_started = await in_progress_in_our_database(stack, TransferState.RECEIVED)

    try:
        report = await sweep_until(
            stack,
            lambda r: (
                {late_hold, stranger_hold} <= set(by_hold(r))
                and {workflow_ended, never_started} <= set(by_transfer(r, "WORKFLOW_GONE"))
            ),
        )

        holds = by_hold(report)
        assert holds[late_hold] | {"since": None} == {
            "kind": "ORPHAN_HOLD", "transferId": aborted["transferId"], "holdId": late_hold,
            "state": aborted["currentState"], "errorCode": aborted["lastError"]["code"], "workflowStatus": None,
            "amount": "500.00", "currency": "USD", "since": None,
        }  # fmt: skip
        assert (holds[stranger_hold]["transferId"], holds[stranger_hold]["state"]) == (stranger, None)
        assert holds[stranger_hold]["amount"] == "7.25"
        gone = by_transfer(report, "WORKFLOW_GONE")
        assert (gone[workflow_ended]["state"], gone[workflow_ended]["workflowStatus"]) == ("RECONCILING", "COMPLETED")
        assert (gone[never_started]["state"], gone[never_started]["workflowStatus"]) == ("RECEIVED", "NOT_FOUND")
        assert report["holds"]["error"] is None and report["transfers"]["error"] is None

        # Nothing healthy: neither the committed nor the reconciling hold, nor either transfer.
        reported_transfers = {f["transferId"] for f in findings(report)}
        assert completed["transferId"] not in reported_transfers
        assert reconciling["transferId"] not in reported_transfers
        assert {completed["holdId"], reconciling["holdId"]}.isdisjoint(by_hold(report))

        # The stored report, as an operator reads it later: one line per finding, ids and states, no personal data.
        printed = await asyncio.to_thread(stuck, stack)
        assert printed.returncode == 0, printed.stderr
        lines = printed.stdout.splitlines()
        assert report["runId"] in lines[0]
        line_of = {key: [line for line in lines if key in line] for key in (late_hold, stranger_hold, workflow_ended)}
        assert all(len(found) == 1 for found in line_of.values()), printed.stdout
        assert line_of[late_hold][0].split()[:3] == ["ORPHAN_HOLD", aborted["transferId"], aborted["currentState"]]
        assert line_of[stranger_hold][0].split()[:3] == ["ORPHAN_HOLD", stranger, "unknown"]
        assert "COMPLETED" in line_of[workflow_ended][0].split()
        assert completed["transferId"] not in printed.stdout and reconciling["holdId"] not in printed.stdout
        assert payer not in printed.stdout and account_id not in printed.stdout

        # A log line per finding (ids and states only), and the gauges of the API's /metrics.
        warned = [r["event"] for r in our_records(stack.worker.log_path) if r["logger"] == "mojaflow.sweeper"]
        assert any(late_hold in line and "ORPHAN_HOLD" in line for line in warned)
        assert any(workflow_ended in line and "COMPLETED" in line for line in warned)
        assert not any(payer in line or account_id in line for line in warned)
        scraped = await http.get(f"{stack.api_url}/metrics")  # the operator key (tests/support/auth.py)
        assert scraped.status_code == 200, scraped.text
        gauges = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name.startswith("mojaflow_sweeper_")
        }
        # The latest sweep: the one printed above, or a later scheduled one that found the same (at least).
        assert gauges[("mojaflow_sweeper_findings", (("kind", "ORPHAN_HOLD"),))] >= 2
        assert gauges[("mojaflow_sweeper_findings", (("kind", "WORKFLOW_GONE"),))] >= 2
        assert gauges[("mojaflow_sweeper_last_sweep_complete", ())] == 1
        finished = datetime.fromisoformat(report["finishedAt"]).timestamp()
        assert gauges[("mojaflow_sweeper_last_sweep_timestamp_seconds", ())] >= finished - 0.001
    finally:
        for hold_id in (late_hold, stranger_hold):  # the operator's resolution, by hand at the CBS
            assert (await http.post(f"{stack.cbs_url}/holds/{hold_id}/release")).status_code == 200
        await http.delete(f"{stack.sdk_url}/_sim/faults/{reconciling_body['homeTransactionId']}")  # the truth again


async def test_a_cbs_that_does_not_answer_is_a_check_not_run(stack: Stack, http: httpx.AsyncClient) -> None:
    fault = {"mode": "down"}  # until cleared: a scheduled sweep meanwhile must not use up this one's failures
    assert (await http.put(f"{stack.cbs_url}/_sim/faults/list_holds", json=fault)).status_code == 200
    try:
        run = await asyncio.to_thread(stuck, stack, "--now")
    finally:
        await http.delete(f"{stack.cbs_url}/_sim/faults/list_holds")
    assert run.returncode == 0, run.stderr
    assert "holds NOT CHECKED: CoreBankingUnavailable" in run.stdout
    assert "transfers NOT CHECKED" not in run.stdout
