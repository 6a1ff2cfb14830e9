"""`mojaflow transfers resolve`, run as an operator runs it (the command, with an operator key from `mojaflow keys
create`), against the real stack: transfers driven into RECONCILING, SETTLING, settlement_failed and release_failed
by the simulators' fault switches. What the CBS did is read at the CBS simulator (the hold's status, the account's
balance and held amount), never from our own records; what we recorded, with `mojaflow transfers show --json` (the
resolution, the audit trail, the states from the webhook outbox: one event per state)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio.common import WorkflowIDReusePolicy

from mojaflow.resolution import ResolutionRequest, ResolutionResult, resolution_workflow_id
from tests.conftest import ROOT, Stack
from tests.histories.paths import TRANSFER_REJECTED, Driver
from tests.support.auth import OPERATOR_CLIENT_KEY, keys_for

RESERVED_AT_SWITCH = {"moneyStepAnswer": "timeout", "moneyStepDelayS": 0.1, "switchOutcome": "RESERVED"}
REASON = "hub ops: checked in the hub's UI, ticket OPS-42"


@pytest.fixture
def driver(stack: Stack, http: httpx.AsyncClient) -> Driver:
    return Driver(stack, http)


@pytest.fixture
async def operator_key(stack: Stack) -> str:
    return await keys_for(stack.api_url).key_async(OPERATOR_CLIENT_KEY, operator=True)


def key_id(key: str) -> str:
    return key.split("_")[1]


def mojaflow(stack: Stack, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    env.pop("MOJAFLOW_OPERATOR_API_KEY", None)
    if key is not None:
        env["MOJAFLOW_OPERATOR_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "transfers", *args], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def resolve(
    stack: Stack, key: str | None, transfer_id: str, outcome: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return mojaflow(stack, key, "resolve", transfer_id, f"--{outcome}", "--reason", REASON, *extra)


def show(stack: Stack, transfer_id: str) -> dict[str, Any]:
    shown = mojaflow(stack, None, "show", transfer_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


async def at_cbs(http: httpx.AsyncClient, stack: Stack, path: str) -> dict[str, Any]:
    response = await http.get(f"{stack.cbs_url}{path}")
    response.raise_for_status()
    return dict(response.json())


async def hold_and_account(
    http: httpx.AsyncClient, stack: Stack, hold_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    hold = await at_cbs(http, stack, f"/holds/{hold_id}")
    return hold, await at_cbs(http, stack, f"/accounts/{hold['accountId']}")


def assert_resolved(document: dict[str, Any], key: str, outcome: str, was: str, state: str) -> None:
    """The transfer keeps the resolution; the audit trail has one entry by the key; one event per state."""
    resolution = document["transfer"]["resolution"]
    assert (resolution["outcome"], resolution["actor"], resolution["resolvedFrom"]) == (
        outcome, f"api_key:{key_id(key)}", was,
    )  # fmt: skip
    assert resolution["reason"] == REASON
    entries = [e for e in document["audit"] if e["action"] == f"resolve_{outcome.lower()}"]
    assert len(entries) == 1, document["audit"]
    assert entries[0]["actor"] == f"api_key:{key_id(key)}" and REASON in entries[0]["detail"]
    states = document["states"]
    assert [s["sequence"] for s in states] == list(range(1, len(states) + 1))  # one event each, none twice
    assert states[-1]["state"] == state and document["transfer"]["currentState"] == state


# -- a running transfer: the `resolve` update ---------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["committed", "aborted"])
async def test_a_reconciling_transfer_is_settled_as_the_hub_says(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str, outcome: str
) -> None:
    transfer_id, _ = await driver.outbound(amount="10", fault=RESERVED_AT_SWITCH)
    reconciling = await driver.state(transfer_id, "RECONCILING")
    hold_id = reconciling["holdId"]
    hold, before = await hold_and_account(http, stack, hold_id)
    assert hold["status"] == "HELD"

    resolved = resolve(stack, operator_key, transfer_id, outcome)

    assert resolved.returncode == 0, resolved.stderr
    expected = "COMPLETED" if outcome == "committed" else "ABORTED"
    assert resolved.stdout.split()[:2] == [transfer_id, expected]
    hold, after = await hold_and_account(http, stack, hold_id)
    amount = Decimal(hold["amount"])
    if outcome == "committed":  # debited once: the balance went down by the hold's amount, nothing is held
        assert hold["status"] == "COMMITTED"
        assert Decimal(after["balance"]) == Decimal(before["balance"]) - amount
    else:
        assert hold["status"] == "RELEASED"
        assert Decimal(after["balance"]) == Decimal(before["balance"])
    assert Decimal(after["held"]) == Decimal(before["held"]) - amount == 0
    document = show(stack, transfer_id)
    assert_resolved(document, operator_key, outcome.upper(), "RECONCILING", expected)
    if outcome == "aborted":
        assert document["transfer"]["lastError"]["code"] == "transfer_aborted"
        assert "operator" in document["transfer"]["lastError"]["message"]
    again = resolve(stack, operator_key, transfer_id, outcome)
    assert again.returncode == 1 and "already resolved" in again.stderr, again.stderr


async def test_an_inbound_reconciling_transfer_is_credited_as_the_hub_says(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str
) -> None:
    transfer_id = await driver.inbound_reserved(amount="25")
    await driver.switch_says(transfer_id, "RESERVED")
    await driver.notify(transfer_id, None, current_state="ERROR_OCCURRED")  # no final word: reconcile
    reconciling = await driver.state(transfer_id, "RECONCILING")
    credit = await at_cbs(http, stack, f"/credits/{reconciling['holdId']}")
    before = await at_cbs(http, stack, f"/accounts/{credit['accountId']}")

    resolved = resolve(stack, operator_key, transfer_id, "committed")

    assert resolved.returncode == 0, resolved.stderr
    credit = await at_cbs(http, stack, f"/credits/{reconciling['holdId']}")
    after = await at_cbs(http, stack, f"/accounts/{credit['accountId']}")
    assert credit["status"] == "COMMITTED"
    assert Decimal(after["balance"]) == Decimal(before["balance"]) + Decimal(credit["amount"])
    assert Decimal(after["pendingCredits"]) == Decimal(before["pendingCredits"]) - Decimal(credit["amount"])
    assert_resolved(show(stack, transfer_id), operator_key, "COMMITTED", "RECONCILING", "COMMITTED")


async def test_a_settling_transfer_takes_committed_only_and_is_debited_once(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str
) -> None:
    (await http.put(f"{stack.cbs_url}/_sim/faults/commit_hold", json={"mode": "down"})).raise_for_status()
    try:
        transfer_id, _ = await driver.outbound(amount="10")
        settling = await driver.state(transfer_id, "SETTLING", timeout_s=120)  # a minute of local retries first
        _, before = await hold_and_account(http, stack, settling["holdId"])

        refused = resolve(stack, operator_key, transfer_id, "aborted")
        assert refused.returncode == 1 and "SETTLING: the switch committed" in refused.stderr, refused.stderr
        acknowledged = resolve(stack, operator_key, transfer_id, "committed", "--wait", "0")
        assert acknowledged.returncode == 0, acknowledged.stderr
        assert acknowledged.stdout.split()[:2] == [transfer_id, "SETTLING"]  # the CBS is still down
    finally:
        (await http.delete(f"{stack.cbs_url}/_sim/faults/commit_hold")).raise_for_status()

    await driver.state(transfer_id, "COMPLETED", timeout_s=420)  # the outage's back-off: up to 5 minutes
    hold, after = await hold_and_account(http, stack, settling["holdId"])
    assert hold["status"] == "COMMITTED"
    assert Decimal(after["balance"]) == Decimal(before["balance"]) - Decimal(hold["amount"])
    assert_resolved(show(stack, transfer_id), operator_key, "COMMITTED", "SETTLING", "COMPLETED")


# -- a final transfer that needs a person: ResolutionWorkflow ------------------------------------------------------


async def _settlement_failed(driver: Driver) -> dict[str, Any]:
    await driver.cbs_refuses_next("commit_hold", "hold_released")
    transfer_id, _ = await driver.outbound(amount="10")
    view = await driver.state(transfer_id, "ERROR_OCCURRED")
    assert view["lastError"]["code"] == "settlement_failed"
    return view


async def _release_failed(driver: Driver) -> dict[str, Any]:
    await driver.cbs_refuses_next("release_hold", "hold_committed")
    transfer_id, _ = await driver.outbound(amount=TRANSFER_REJECTED)  # the payee rejects: the hold is released
    view = await driver.state(transfer_id, "ERROR_OCCURRED")
    assert view["lastError"]["code"] == "release_failed"
    return view


async def test_a_settlement_failed_transfer_is_committed_once_and_never_released(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str
) -> None:
    failed = await _settlement_failed(driver)
    transfer_id, hold_id = failed["transferId"], failed["holdId"]
    hold, before = await hold_and_account(http, stack, hold_id)
    assert hold["status"] == "HELD"  # the CBS refused the commit: the hold is still there

    aborted = resolve(stack, operator_key, transfer_id, "aborted")
    assert aborted.returncode == 1 and "settlement_failed: the switch committed" in aborted.stderr, aborted.stderr
    resolved = resolve(stack, operator_key, transfer_id, "committed")

    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.split()[:2] == [transfer_id, "COMPLETED"]
    assert f"resolve-{transfer_id}" in resolved.stderr
    hold, after = await hold_and_account(http, stack, hold_id)
    assert hold["status"] == "COMMITTED"
    assert Decimal(after["balance"]) == Decimal(before["balance"]) - Decimal(hold["amount"])
    assert Decimal(after["held"]) == Decimal(before["held"]) - Decimal(hold["amount"])
    document = show(stack, transfer_id)
    assert_resolved(document, operator_key, "COMMITTED", "ERROR_OCCURRED", "COMPLETED")
    assert [s["state"] for s in document["states"]][-2:] == ["ERROR_OCCURRED", "COMPLETED"]
    assert "lastError" not in document["transfer"]
    assert sum(1 for e in document["audit"] if e["action"].startswith("resolve_")) == 1  # the refusal changed nothing
    # Already resolved: the command says so, and a second ResolutionWorkflow run under the same id (as a command
    # that read the transfer before the first one ended would start) refuses it itself: committed once.
    again = resolve(stack, operator_key, transfer_id, "committed")
    assert again.returncode == 1 and "already resolved COMMITTED" in again.stderr, again.stderr
    second = await stack.client.execute_workflow(
        "ResolutionWorkflow",
        ResolutionRequest(transfer_id=transfer_id, outcome="COMMITTED", reason="again", actor="test"),
        id=resolution_workflow_id(transfer_id),
        task_queue=stack.env["MOJAFLOW_TASK_QUEUE"],
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=ResolutionResult,
    )
    assert second.status == "refused" and "already resolved COMMITTED" in (second.detail or ""), second
    assert (await hold_and_account(http, stack, hold_id))[1] == after


@pytest.mark.parametrize("outcome", ["aborted", "committed"])
async def test_a_release_failed_transfer_is_settled_either_way(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str, outcome: str
) -> None:
    failed = await _release_failed(driver)
    transfer_id, hold_id = failed["transferId"], failed["holdId"]
    hold, before = await hold_and_account(http, stack, hold_id)
    assert hold["status"] == "HELD"

    resolved = resolve(stack, operator_key, transfer_id, outcome)

    assert resolved.returncode == 0, resolved.stderr
    state = "ABORTED" if outcome == "aborted" else "COMPLETED"
    hold, after = await hold_and_account(http, stack, hold_id)
    amount = Decimal(hold["amount"])
    assert hold["status"] == ("RELEASED" if outcome == "aborted" else "COMMITTED")
    debit = 0 if outcome == "aborted" else amount
    assert Decimal(after["balance"]) == Decimal(before["balance"]) - debit
    assert Decimal(after["held"]) == Decimal(before["held"]) - amount
    document = show(stack, transfer_id)
    assert_resolved(document, operator_key, outcome.upper(), "ERROR_OCCURRED", state)
    assert [s["state"] for s in document["states"]][-2:] == ["ERROR_OCCURRED", state]


async def test_a_resolution_the_cbs_refuses_leaves_the_transfer_as_it_was(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str
) -> None:
    failed = await _release_failed(driver)
    transfer_id, hold_id = failed["transferId"], failed["holdId"]
    await driver.cbs_refuses_next("release_hold", "hold_committed")

    refused = resolve(stack, operator_key, transfer_id, "aborted")

    assert refused.returncode == 1, refused.stderr
    assert f"the CBS refused to release hold {hold_id} (hold_committed)" in refused.stderr
    assert (await at_cbs(http, stack, f"/holds/{hold_id}"))["status"] == "HELD"
    document = show(stack, transfer_id)
    assert document["transfer"]["currentState"] == "ERROR_OCCURRED" and "resolution" not in document["transfer"]
    assert [e["actor"] for e in document["audit"] if e["action"] == "resolve_aborted"] == [
        f"api_key:{key_id(operator_key)}"
    ]
    assert "the CBS refused" in document["audit"][-1]["detail"]

    retried = resolve(stack, operator_key, transfer_id, "aborted")  # the CBS answers this time: the same id again

    assert retried.returncode == 0, retried.stderr
    assert (await at_cbs(http, stack, f"/holds/{hold_id}"))["status"] == "RELEASED"
    assert show(stack, transfer_id)["transfer"]["currentState"] == "ABORTED"


# -- refusals -----------------------------------------------------------------------------------------------------


async def test_what_cannot_be_resolved_is_refused_with_a_reason(
    stack: Stack, http: httpx.AsyncClient, driver: Driver, operator_key: str
) -> None:
    transfer_id, _ = await driver.outbound(amount="10", wait=True)
    await driver.state(transfer_id, "COMPLETED")
    client_key = await keys_for(stack.api_url).key_async("bank1")

    cases = {
        "unknown": (resolve(stack, operator_key, "no-such-transfer", "committed"), 1, "no transfer no-such-transfer"),
        "final": (resolve(stack, operator_key, transfer_id, "aborted"), 1, "COMPLETED needs no settlement by hand"),
        "no reason": (mojaflow(stack, operator_key, "resolve", transfer_id, "--committed"), 2, "--reason"),
        "blank reason": (
            mojaflow(stack, operator_key, "resolve", transfer_id, "--committed", "--reason", "  "), 2, "must say why",
        ),
        "both": (resolve(stack, operator_key, transfer_id, "committed", "--aborted"), 2, "exactly one of"),
        "neither": (mojaflow(stack, operator_key, "resolve", transfer_id, "--reason", "x"), 2, "exactly one of"),
        "no key": (resolve(stack, None, transfer_id, "committed"), 2, "MOJAFLOW_OPERATOR_API_KEY"),
        "not an operator": (resolve(stack, client_key, transfer_id, "committed"), 2, "not an operator key"),
        "not a key": (resolve(stack, "mf_000000000000_" + "A" * 43, transfer_id, "committed"), 2, "not valid here"),
    }  # fmt: skip

    for name, (result, code, message) in cases.items():
        assert (result.returncode, message in result.stderr) == (code, True), f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, name
    assert "resolution" not in show(stack, transfer_id)["transfer"]
