"""The paths the corpus records: each drives the real stack over HTTP, as the CBS and the SDK would (the
simulators' fault switches pick the path), waits until the transfer's workflow is closed, and returns its id. The
webhook delivery workflow's paths are in tests/histories/webhook_paths.py.

Every driver waits for a condition, never for a fixed time; the waits are bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy

from mojaflow.resolution import ResolutionRequest, ResolveInput, resolution_workflow_id
from mojaflow.sweeper import SweepReport, SweepRequest
from mojaflow.temporal import inbound_workflow_id, outbound_workflow_id
from tests.histories.webhook_paths import WEBHOOK_PATHS
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.stack import Stack
from tests.support.transfers import (
    money_movement_headers,
    new_payer,
    set_fault,
    sim_transfer,
    start_async,
    transfer_body,
    wait_for_state,
)

__all__ = ["PATHS", "Driver"]

OUTBOUND_FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}
INBOUND_FINAL = {"COMMITTED", "ABORTED", "ERROR_OCCURRED"}
PARTY_NOT_FOUND, PARTY_TIMEOUT, UNKNOWN_PAYER = "25600000404", "25600000408", "25699999999"
QUOTE_REJECTED, TRANSFER_REJECTED = "500", "600"  # the SDK simulator's magic amounts


@dataclass
class Driver:
    stack: Stack
    http: httpx.AsyncClient
    receiver_url: str | None = None  # the webhook receiver simulator's, for the webhook paths

    # -- outbound ----------------------------------------------------------------------------------

    async def outbound(
        self, *, balance: str = "1000.00", fault: dict[str, Any] | None = None, wait: bool = False, **overrides: Any
    ) -> tuple[str, str]:
        """Start a transfer from a payer of its own: (transferId, workflow id). `wait`: as most CBS calls do, with
        the API's default wait (update-with-start); else `Prefer: respond-async` (a plain start)."""
        payer, _ = await new_payer(self.http, self.stack.cbs_url, balance=balance)
        body = transfer_body(**{"payer": payer, **overrides})
        if fault:
            await set_fault(self.http, self.stack.sdk_url, body["homeTransactionId"], **fault)
        if not wait:
            transfer, workflow_id = await start_async(self.http, self.stack.api_url, body)
            return transfer["transferId"], workflow_id
        headers = money_movement_headers()
        response = await self.http.post(f"{self.stack.api_url}/transfers", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["transferId"], outbound_workflow_id(
            headers["client_key"], headers["idempotent_request_key"]
        )

    async def state(self, transfer_id: str, *states: str, timeout_s: float = 60) -> dict[str, Any]:
        return await wait_for_state(self.http, self.stack.api_url, transfer_id, set(states), timeout_s=timeout_s)

    async def decide(self, transfer_id: str, **decision: bool) -> None:
        url = f"{self.stack.api_url}/transfers/{transfer_id}"
        response = await self.http.put(url, json=decision, headers=money_movement_headers())
        assert response.status_code == 200, response.text

    async def outbound_to_end(self, *, expect: str, **kwargs: Any) -> str:
        transfer_id, workflow_id = await self.outbound(**kwargs)
        await self.state(transfer_id, expect, *OUTBOUND_FINAL)
        return await self.closed(workflow_id, transfer_id, expect)

    async def closed(self, workflow_id: str, transfer_id: str, expect: str, *, inbound: bool = False) -> str:
        """Once the transfer is in `expect` (else fail with what it is) and its last run has closed."""
        final = INBOUND_FINAL if inbound else OUTBOUND_FINAL
        view = await self.state(transfer_id, *final)
        assert view["currentState"] == expect, f"{workflow_id}: {view['currentState']}, not {expect}: {view}"
        handle = self.stack.client.get_workflow_handle(workflow_id)
        await _until(lambda: _closed(handle), f"{workflow_id} never closed")
        return workflow_id

    async def runs(self, workflow_id: str, count: int) -> None:
        """Until the workflow has continued as new into its `count`-th run."""
        query = f"WorkflowId = '{workflow_id}'"

        async def enough() -> bool:
            return (await self.stack.client.count_workflows(query)).count >= count

        await _until(enough, f"{workflow_id} never reached {count} runs", timeout_s=60)

    async def switch_says(self, sdk_transfer_id: str, state: str) -> None:
        """What the simulated switch answers about the transfer from now on."""
        await switch_records(self.http, self.stack.sdk_url, sdk_transfer_id, state)

    async def cbs_refuses_next(self, operation: str, code: str) -> None:
        """The CBS simulator refuses the next call of `operation` (409 `code`), as a CBS whose state moved on."""
        fault = {"mode": "refuse", "code": code, "httpStatus": 409, "times": 1}
        (await self.http.put(f"{self.stack.cbs_url}/_sim/faults/{operation}", json=fault)).raise_for_status()

    async def cancel(self, workflow_id: str) -> None:
        await self.stack.client.get_workflow_handle(workflow_id).cancel()

    # -- inbound -----------------------------------------------------------------------------------

    async def inbound_reserved(self, amount: str = "25", **quote_options: Any) -> str:
        """A party lookup, a quote and a reserved transfer, as the SDK sends them: the Mojaloop transferId."""
        payee = await new_payee(self.http, self.stack.cbs_url)
        party = await self.http.get(f"{self.stack.backend_url}/parties/MSISDN/{payee.msisdn}")
        assert party.status_code == 200, party.text
        quote = await self.quote(payee, amount, **quote_options)
        response = await self.http.post(f"{self.stack.backend_url}/transfers", json=transfer_request(payee, quote))
        assert response.status_code == 200, response.text
        return str(quote["transactionId"])

    async def quote(self, payee: Any, amount: str, **options: Any) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.stack.backend_url}/quoterequests", json=quote_request(payee, amount, **options)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def notify(self, transfer_id: str, state: str | None, **kwargs: Any) -> None:
        body = notification(transfer_id, state, **kwargs)
        response = await self.http.put(f"{self.stack.backend_url}/transfers/{transfer_id}", json=body)
        assert response.status_code == 200, response.text

    async def inbound_closed(self, transfer_id: str, expect: str) -> str:
        return await self.closed(inbound_workflow_id(transfer_id), transfer_id, expect, inbound=True)


async def _closed(handle: Any) -> bool:
    return bool((await handle.describe()).status != WorkflowExecutionStatus.RUNNING)


async def _until(condition: Callable[[], Awaitable[bool]], message: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.1)


# -- the outbound paths ------------------------------------------------------------------------------


async def _manual(d: Driver, **decisions: bool) -> tuple[str, str]:
    transfer_id, workflow_id = await d.outbound(autoAcceptParty=False, autoAcceptQuote=False)
    await d.state(transfer_id, "WAITING_FOR_PARTY_ACCEPTANCE")
    await d.decide(transfer_id, acceptParty=decisions["party"])
    if "quote" in decisions:
        await d.state(transfer_id, "WAITING_FOR_QUOTE_ACCEPTANCE")
        await d.decide(transfer_id, acceptQuote=decisions["quote"])
    return transfer_id, workflow_id


async def manual_accepted(d: Driver) -> str:
    transfer_id, workflow_id = await _manual(d, party=True, quote=True)
    return await d.closed(workflow_id, transfer_id, "COMPLETED")


async def quote_declined(d: Driver) -> str:
    transfer_id, workflow_id = await _manual(d, party=True, quote=False)
    return await d.closed(workflow_id, transfer_id, "ABORTED")


async def party_rejected(d: Driver) -> str:
    transfer_id, workflow_id = await _manual(d, party=False)
    return await d.closed(workflow_id, transfer_id, "ABORTED")


async def acceptance_timeout(d: Driver) -> str:
    """No decision within MOJAFLOW_ACCEPTANCE_TIMEOUT_S (6 s in the test stack): a durable timer fires."""
    return await d.outbound_to_end(expect="ABORTED", autoAcceptParty=False)


async def worker_crash_reconciled(d: Driver) -> str:
    """The worker SIGKILLed while the money step is in flight; the new worker reconciles with the switch."""
    fault = {"moneyStepDelayS": 60, "switchOutcome": "COMMITTED"}
    transfer_id, workflow_id = await d.outbound(amount="10", fault=fault)
    in_flight = await d.state(transfer_id, "TRANSFERRING")

    async def prepared() -> bool:
        return int((await sim_transfer(d.http, d.stack.sdk_url, in_flight["sdkTransferId"]))["prepareCount"]) >= 1

    await _until(prepared, "the money step never reached the switch")
    d.stack.worker.kill()
    d.stack.worker = d.stack.worker_process().start()
    return await d.closed(workflow_id, transfer_id, "COMPLETED")


async def _reconcile_across_runs(d: Driver, transfer_id: str, workflow_id: str) -> str:
    """The switch says RESERVED until the reconciliation has continued as new twice, then COMMITTED."""
    reconciling = await d.state(transfer_id, "RECONCILING")
    await d.runs(workflow_id, 3)
    await d.switch_says(reconciling["sdkTransferId"], "COMMITTED")
    return await d.closed(workflow_id, transfer_id, "COMPLETED")


async def reconcile_continue_as_new(d: Driver) -> str:
    fault = {"moneyStepAnswer": "timeout", "moneyStepDelayS": 0.2, "switchOutcome": "RESERVED"}
    transfer_id, workflow_id = await d.outbound(amount="10", fault=fault)
    return await _reconcile_across_runs(d, transfer_id, workflow_id)


async def cancel_waiting_for_party(d: Driver) -> str:
    transfer_id, workflow_id = await d.outbound(autoAcceptParty=False)
    await d.state(transfer_id, "WAITING_FOR_PARTY_ACCEPTANCE")
    await d.cancel(workflow_id)
    return await d.closed(workflow_id, transfer_id, "ABORTED")


async def cancel_during_money_step(d: Driver) -> str:
    transfer_id, workflow_id = await d.outbound(fault={"moneyStepDelayS": 3, "switchOutcome": "COMMITTED"})
    await d.state(transfer_id, "TRANSFERRING")
    await d.cancel(workflow_id)
    return await d.closed(workflow_id, transfer_id, "COMPLETED")


async def settlement_failed(d: Driver) -> str:
    """The switch committed, the CBS refuses to commit the hold: ERROR_OCCURRED, a person must act."""
    await d.cbs_refuses_next("commit_hold", "hold_released")
    return await d.outbound_to_end(expect="ERROR_OCCURRED", amount="10")


async def release_failed(d: Driver) -> str:
    """The payee rejected the transfer (5105), the CBS refuses to release the hold: ERROR_OCCURRED."""
    await d.cbs_refuses_next("release_hold", "hold_committed")
    return await d.outbound_to_end(expect="ERROR_OCCURRED", amount=TRANSFER_REJECTED)


async def reconciling_resolved(d: Driver) -> str:
    """The switch says RESERVED; an operator, having checked with the hub, resolves it COMMITTED (the `resolve`
    update, as `mojaflow transfers resolve` sends it): the hold is committed."""
    fault = {"moneyStepAnswer": "timeout", "moneyStepDelayS": 0.1, "switchOutcome": "RESERVED"}
    transfer_id, workflow_id = await d.outbound(amount="10", fault=fault)
    await d.state(transfer_id, "RECONCILING")
    request = ResolveInput(outcome="COMMITTED", reason="hub: COMMITTED", actor="api_key:000000000000")
    await d.stack.client.get_workflow_handle(workflow_id).execute_update("resolve", request)
    return await d.closed(workflow_id, transfer_id, "COMPLETED")


async def release_failed_resolved(d: Driver) -> str:
    """A release_failed transfer, released by an operator's `ResolutionWorkflow` (`resolve-{transferId}`)."""
    await d.cbs_refuses_next("release_hold", "hold_committed")
    transfer_id, transfer_workflow_id = await d.outbound(amount=TRANSFER_REJECTED)
    await d.closed(transfer_workflow_id, transfer_id, "ERROR_OCCURRED")
    request = ResolutionRequest(
        transfer_id=transfer_id, outcome="ABORTED", reason="hub: ABORTED", actor="api_key:000000000000"
    )
    workflow_id = resolution_workflow_id(transfer_id)
    await d.stack.client.execute_workflow(
        "ResolutionWorkflow", request, id=workflow_id, task_queue=d.stack.env["MOJAFLOW_TASK_QUEUE"],
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )  # fmt: skip
    await d.state(transfer_id, "ABORTED")
    return workflow_id


def _to_end(expect: str, **kwargs: Any) -> Callable[[Driver], Awaitable[str]]:
    async def drive(d: Driver) -> str:
        return await d.outbound_to_end(expect=expect, **kwargs)

    return drive


# -- the inbound paths -------------------------------------------------------------------------------


async def inbound_committed(d: Driver) -> str:
    """The switch decides, then the SDK relays its final notification (a COMMITTED one is confirmed with it)."""
    transfer_id = await d.inbound_reserved()
    await d.switch_says(transfer_id, "COMMITTED")
    await d.notify(transfer_id, "COMMITTED")
    return await d.inbound_closed(transfer_id, "COMMITTED")


async def inbound_aborted(d: Driver) -> str:
    transfer_id = await d.inbound_reserved()
    await d.switch_says(transfer_id, "ABORTED")
    await d.notify(transfer_id, "ABORTED")
    return await d.inbound_closed(transfer_id, "ABORTED")


async def inbound_reconciled_without_notification(d: Driver) -> str:
    """No final notification by the quote's expiration (3 s) plus the grace: the switch is asked."""
    transfer_id = await d.inbound_reserved(expires_in_s=3)
    await d.switch_says(transfer_id, "COMMITTED")
    return await d.inbound_closed(transfer_id, "COMMITTED")


async def inbound_reconcile_continue_as_new(d: Driver) -> str:
    """An ERROR_OCCURRED notification: the switch is asked at once; it says RESERVED across two continue-as-new."""
    transfer_id = await d.inbound_reserved()
    await d.switch_says(transfer_id, "RESERVED")
    await d.notify(transfer_id, None, current_state="ERROR_OCCURRED")
    await d.state(transfer_id, "RECONCILING")
    await d.runs(inbound_workflow_id(transfer_id), 3)
    await d.switch_says(transfer_id, "COMMITTED")
    return await d.inbound_closed(transfer_id, "COMMITTED")


async def inbound_settlement_failed(d: Driver) -> str:
    transfer_id = await d.inbound_reserved()
    await d.cbs_refuses_next("commit_credit", "reservation_released")
    await d.switch_says(transfer_id, "COMMITTED")
    await d.notify(transfer_id, "COMMITTED")
    return await d.inbound_closed(transfer_id, "ERROR_OCCURRED")


async def inbound_credit_refused(d: Driver) -> str:
    payee = await new_payee(d.http, d.stack.cbs_url)
    quote = await d.quote(payee, "5")
    blocked = await d.http.patch(f"{d.stack.cbs_url}/_sim/accounts/{payee.account_id}", json={"status": "blocked"})
    blocked.raise_for_status()
    response = await d.http.post(f"{d.stack.backend_url}/transfers", json=transfer_request(payee, quote))
    assert response.status_code == 400, response.text
    return await d.inbound_closed(quote["transactionId"], "ABORTED")


async def inbound_quote_mismatch(d: Driver) -> str:
    payee = await new_payee(d.http, d.stack.cbs_url)
    quote = await d.quote(payee, "25")
    body = transfer_request(payee, quote, amount="26")
    response = await d.http.post(f"{d.stack.backend_url}/transfers", json=body)
    assert response.status_code == 400, response.text
    return await d.inbound_closed(quote["transactionId"], "ABORTED")


async def accounts_registered(d: Driver) -> str:
    """The Send Money API's `POST /accounts`: one id registered, one refused by the ALS (an entry with its error)."""
    accounts = [{"idType": "MSISDN", "idValue": "25612345678", "currency": "USD"},
                {"idType": "MSISDN", "idValue": "25600000409", "currency": "USD"}]  # fmt: skip
    response = await d.http.post(f"{d.stack.api_url}/accounts", json=accounts)
    assert response.status_code == 200, response.text
    query = f"WorkflowType = 'AccountRegistrationWorkflow' AND TaskQueue = '{d.stack.env['MOJAFLOW_TASK_QUEUE']}'"
    runs = [execution.id async for execution in d.stack.client.list_workflows(query)]
    assert len(runs) == 1, runs
    handle = d.stack.client.get_workflow_handle(runs[0])
    await _until(lambda: _closed(handle), f"{runs[0]} never closed")
    return runs[0]


async def sweeper_swept(d: Driver) -> str:
    """A sweep (`SweeperWorkflow`, as the Schedule or `mojaflow transfers stuck --now` starts it) that finds a hold
    left at the CBS for a transfer we never had: swept again until the hold is older than the stack's grace."""
    _, account_id = await new_payer(d.http, d.stack.cbs_url)
    body = {"holdKey": f"{uuid.uuid4()}-hold", "accountId": account_id, "amount": "3", "currency": "USD"}
    response = await d.http.post(f"{d.stack.cbs_url}/holds", json=body)
    assert response.status_code == 201, response.text
    hold_id = response.json()["holdId"]
    deadline = time.monotonic() + 30
    while True:
        workflow_id = f"sweeper-corpus-{uuid.uuid4()}"
        report = await d.stack.client.execute_workflow(
            "SweeperWorkflow", SweepRequest(trigger="manual"), id=workflow_id,
            task_queue=d.stack.env["MOJAFLOW_TASK_QUEUE"], result_type=SweepReport,
        )  # fmt: skip
        if any(finding.hold_id == hold_id for finding in report.findings):
            await d.http.post(f"{d.stack.cbs_url}/holds/{hold_id}/release")
            return workflow_id
        assert time.monotonic() < deadline, f"no sweep found the hold {hold_id}"


# The file name of each path (`<name>.json`; a path that continues as new also writes `<name>_run<N>.json` for
# its later runs), and how to drive it.
PATHS: dict[str, Callable[[Driver], Awaitable[str]]] = {
    "outbound_auto_completed": _to_end("COMPLETED", wait=True),
    "outbound_auto_completed_async": _to_end("COMPLETED"),
    "outbound_manual_accepted": manual_accepted,
    "outbound_quote_declined": quote_declined,
    "outbound_party_rejected": party_rejected,
    "outbound_acceptance_timeout": acceptance_timeout,
    "outbound_payer_not_found": _to_end("ERROR_OCCURRED", wait=True, payer=UNKNOWN_PAYER),
    "outbound_party_not_found_3204": _to_end("ERROR_OCCURRED", wait=True, payee=PARTY_NOT_FOUND),
    "outbound_party_lookup_timeout": _to_end("ERROR_OCCURRED", payee=PARTY_TIMEOUT),
    "outbound_quote_rejected_5101": _to_end("ERROR_OCCURRED", wait=True, amount=QUOTE_REJECTED),
    "outbound_quote_over_fee_limit": _to_end("ABORTED", fault={"quoteFee": "6"}),  # MOJAFLOW_MAX_FEE=5
    "outbound_insufficient_funds": _to_end("ABORTED", wait=True, balance="5.00", amount="10"),
    "outbound_transfer_rejected_5105_released": _to_end("ERROR_OCCURRED", wait=True, amount=TRANSFER_REJECTED),
    "outbound_abort_answer_contradicted_by_switch": _to_end(
        "COMPLETED", fault={"moneyStepAnswer": "aborted_200", "switchOutcome": "COMMITTED"}
    ),
    "outbound_money_step_timeout_reconciled": _to_end(
        "COMPLETED", fault={"moneyStepAnswer": "timeout", "moneyStepDelayS": 0.1}
    ),
    "outbound_prepare_lost_released_after_expiry": _to_end(
        "ABORTED", fault={"prepareLost": True, "moneyStepDelayS": 0.2}
    ),
    "outbound_settlement_failed": settlement_failed,
    "outbound_release_failed": release_failed,
    "outbound_worker_crash_reconciled": worker_crash_reconciled,
    "outbound_reconcile_continue_as_new": reconcile_continue_as_new,
    "outbound_reconciling_resolved": reconciling_resolved,
    "resolution_release_failed_released": release_failed_resolved,
    "outbound_cancel_waiting_for_party": cancel_waiting_for_party,
    "outbound_cancel_during_money_step": cancel_during_money_step,
    "outbound_sdk_misconfigured": _to_end("COMPLETED", fault={"autoAccept": "both", "switchOutcome": "COMMITTED"}),
    "outbound_sdk_misconfigured_after_party": _to_end(
        "ABORTED", fault={"autoAccept": "quotes", "switchOutcome": "ABORTED"}
    ),
    "inbound_committed": inbound_committed,
    "inbound_aborted": inbound_aborted,
    "inbound_reconciled_without_notification": inbound_reconciled_without_notification,
    "inbound_reconcile_continue_as_new": inbound_reconcile_continue_as_new,
    "inbound_settlement_failed": inbound_settlement_failed,
    "inbound_credit_refused": inbound_credit_refused,
    "inbound_quote_mismatch": inbound_quote_mismatch,
    "accounts_registered": accounts_registered,
    "sweeper_swept": sweeper_swept,
    **WEBHOOK_PATHS,  # tests/histories/webhook_paths.py
}
