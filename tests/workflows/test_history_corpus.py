"""The deploy safety net: the committed corpus of histories (tests/histories/, one per path, recorded by
`make record-histories`) replays through the sandbox against this commit's workflow code. A change that would
break the workflows already running in a deployment fails here, before it ships; the negative control shows that
it does, with a deliberately reordered OutboundTransferWorkflow.

The corpus's payloads are encrypted with its own test-only key (tests/histories/payload.key, synthetic data).
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec
from temporalio.workflow import NondeterminismError

from worker import WORKFLOWS
from workflows.outbound_transfer import OutboundTransferWorkflow

# The sandbox re-imports this module for the reordered workflow below: what it needs outside a workflow is
# passed through, not re-imported (reading the corpus's files is no workflow's business).
with workflow.unsafe.imports_passed_through():
    from mojaflow.codec import ENCODING, data_converter
    from mojaflow.models import OutboundTransferInput, TransferView
    from tests.histories.corpus import corpus_key, corpus_name, history_files, load_history, replay, result

E = EventType

# Every path the corpus must hold, and how its transfer ended: (currentState, lastError.code, fspiopErrorCode).
OUTCOMES: dict[str, tuple[str, str | None, str | None]] = {
    "outbound_auto_completed": ("COMPLETED", None, None),
    "outbound_auto_completed_async": ("COMPLETED", None, None),
    "outbound_manual_accepted": ("COMPLETED", None, None),
    "outbound_quote_declined": ("ABORTED", "quote_declined", None),
    "outbound_party_rejected": ("ABORTED", "party_rejected", None),
    "outbound_acceptance_timeout": ("ABORTED", "acceptance_timeout", None),
    "outbound_payer_not_found": ("ERROR_OCCURRED", "payer_not_found", None),
    "outbound_party_not_found_3204": ("ERROR_OCCURRED", "party_not_found", "3204"),
    "outbound_party_lookup_timeout": ("ERROR_OCCURRED", "timeout", None),
    "outbound_quote_rejected_5101": ("ERROR_OCCURRED", "payee_rejected", "5101"),
    "outbound_quote_over_fee_limit": ("ABORTED", "fee_limit_exceeded", None),
    "outbound_insufficient_funds": ("ABORTED", "insufficient_funds", None),
    "outbound_transfer_rejected_5105_released": ("ERROR_OCCURRED", "payee_rejected", "5105"),
    "outbound_abort_answer_contradicted_by_switch": ("COMPLETED", None, None),
    "outbound_money_step_timeout_reconciled": ("COMPLETED", None, None),
    "outbound_prepare_lost_released_after_expiry": ("ABORTED", "transfer_not_found", "3208"),
    "outbound_settlement_failed": ("ERROR_OCCURRED", "settlement_failed", None),
    "outbound_release_failed": ("ERROR_OCCURRED", "release_failed", None),
    "outbound_worker_crash_reconciled": ("COMPLETED", None, None),
    "outbound_reconcile_continue_as_new": ("COMPLETED", None, None),
    "outbound_reconciling_resolved": ("COMPLETED", None, None),
    "outbound_cancel_waiting_for_party": ("ABORTED", "cancelled", None),
    "outbound_cancel_during_money_step": ("COMPLETED", None, None),
    "outbound_sdk_misconfigured": ("COMPLETED", "sdk_misconfigured", None),
    "outbound_sdk_misconfigured_after_party": ("ABORTED", "sdk_misconfigured", None),
    "inbound_committed": ("COMMITTED", None, None),
    "inbound_aborted": ("ABORTED", "transfer_aborted", None),
    "inbound_reconciled_without_notification": ("COMMITTED", None, None),
    "inbound_reconcile_continue_as_new": ("COMMITTED", None, None),
    "inbound_settlement_failed": ("ERROR_OCCURRED", "settlement_failed", None),
    "inbound_credit_refused": ("ABORTED", "credit_refused", "5400"),
    "inbound_quote_mismatch": ("ABORTED", "quote_mismatch", "3100"),
}
# What makes a path what it is, beyond its outcome: an event its first run must hold.
MARKS = {
    "outbound_manual_accepted": E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    "outbound_auto_completed": E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,  # update-with-start, as the API waits
    "outbound_acceptance_timeout": E.EVENT_TYPE_TIMER_FIRED,
    "outbound_worker_crash_reconciled": E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,  # the killed worker's heartbeat
    "outbound_cancel_waiting_for_party": E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
    "outbound_cancel_during_money_step": E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
    "inbound_committed": E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    "inbound_reconcile_continue_as_new": E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
}
OTHER_PATHS = (
    "accounts_registered",
    "resolution_release_failed_released",
    "sweeper_swept",
)  # not transfers: what their workflow answers is checked below
CONTINUED = ("outbound_reconcile_continue_as_new", "inbound_reconcile_continue_as_new")  # 3 runs at least
PERSONAL_FIELDS = {
    *("idValue", "idSubValue", "displayName", "firstName", "middleName", "lastName", "dateOfBirth", "name"),
    *("accountId", "account_id", "payer_account_id"),
}


def _codec() -> PayloadCodec:
    codec = data_converter(corpus_key()).payload_codec
    assert codec is not None
    return codec


def _chains() -> dict[str, list[Path]]:
    """The files of each path, first run first (`<path>.json`, then `<path>_run2.json`, …); a deployed release's
    paths are named `deployed/<release>/<path>`."""
    chains: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in history_files():
        match = re.fullmatch(r"(.+?)(?:_run(\d+))?\.json", corpus_name(path))
        assert match is not None
        chains[match.group(1)].append((int(match.group(2) or 1), path))
    return {name: [path for _, path in sorted(runs)] for name, runs in chains.items()}


def _types(history: WorkflowHistory) -> list[int]:
    return [event.event_type for event in history.events]


def test_the_corpus_holds_every_path() -> None:
    chains = _chains()

    assert sorted({*OUTCOMES, *OTHER_PATHS} - set(chains)) == []
    for name in CONTINUED:
        assert len(chains[name]) >= 3, f"{name}: the reconciliation should continue as new twice"


async def test_each_history_is_the_path_its_name_says() -> None:
    for name, files in _chains().items():
        runs = [load_history(path) for path in files]
        for run in runs[:-1]:
            assert _types(run)[-1] == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, name
        view = await result(runs[-1])
        if name == "accounts_registered":  # the SDK's answer as it came: one id registered, one refused
            assert view["status"] == 200, view
            assert [entry.get("error", {}).get("statusCode") for entry in view["body"]["response"]] == [None, "3003"]
            continue
        if name == "resolution_release_failed_released":  # an operator's ResolutionWorkflow released the hold
            assert (view["status"], view["state"]) == ("resolved", "ABORTED"), view
            continue
        if name == "sweeper_swept":  # both checks ran; a hold for a transfer we never had was found (and maybe the
            # holds that other recorded paths, such as settlement_failed, left at the CBS)
            assert (view["holds"]["error"], view["transfers"]["error"]) == (None, None), view
            assert ("ORPHAN_HOLD", None) in [(f["kind"], f["state"]) for f in view["holds"]["findings"]], view
            continue
        error = view.get("lastError") or {}
        if name in OUTCOMES:
            assert (view["currentState"], error.get("code"), error.get("fspiopErrorCode")) == OUTCOMES[name], name
        if name in MARKS:
            assert MARKS[name] in _types(runs[0]), f"{name}: no {E.Name(MARKS[name])}"


async def test_every_history_replays_in_the_sandbox() -> None:
    outcomes = await replay(history_files())

    assert {name: repr(failure) for name, failure in outcomes.items() if failure is not None} == {}
    assert len(outcomes) >= len(OUTCOMES)


def _is_payload(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("metadata"), dict) and "encoding" in data["metadata"]


def _payload(data: dict[str, Any]) -> Payload:
    metadata = {key: base64.b64decode(value) for key, value in data["metadata"].items()}
    return Payload(metadata=metadata, data=base64.b64decode(data.get("data", "")))


def _split(data: Any, encrypted: list[Payload]) -> Any:
    """The history's JSON as anyone reading it sees it in clear: each unencrypted payload decoded, each encrypted
    one taken out (into `encrypted`)."""
    if isinstance(data, list):
        return [_split(item, encrypted) for item in data]
    if not isinstance(data, dict):
        return data
    if _is_payload(data):
        payload = _payload(data)
        if payload.metadata["encoding"] == ENCODING:
            encrypted.append(payload)
            return {"encrypted": True}
        return {"metadata": {k: v.decode() for k, v in payload.metadata.items()}, "data": payload.data.decode()}
    return {key: _split(value, encrypted) for key, value in data.items()}


def _personal_values(data: Any) -> set[str]:
    if isinstance(data, dict):
        found = {str(v) for k, v in data.items() if k in PERSONAL_FIELDS and isinstance(v, str) and v}
        return found.union(*(_personal_values(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(_personal_values(v) for v in data))
    return set()


async def test_party_ids_names_and_accounts_are_only_there_encrypted() -> None:
    """Every party id, name and account the histories carry (found by decrypting them) appears nowhere in what
    the files show in clear: the synthetic data is encrypted as real data would be."""
    codec = _codec()
    personal: set[str] = set()
    in_clear: dict[str, str] = {}
    for path in history_files():
        encrypted: list[Payload] = []
        in_clear[corpus_name(path)] = json.dumps(_split(json.loads(path.read_text()), encrypted), ensure_ascii=False)
        for plain in await codec.decode(encrypted):
            try:
                personal |= _personal_values(json.loads(plain.data))
            except ValueError:
                continue  # not JSON: not one of our models

    assert {"Test Payer", "Test Payee", "Inbound Payee", "25633333333"} <= personal  # what the check looks for
    leaks = {name: sorted(value for value in personal if value in text) for name, text in in_clear.items()}
    assert {name: found for name, found in leaks.items() if found} == {}
    assert [name for name, text in in_clear.items() if re.search(r"256\d{8}", text)] == []  # no MSISDN at all


# -- the negative control ----------------------------------------------------------------------------------------


@workflow.defn(name="OutboundTransferWorkflow")
class ReorderedOutboundTransferWorkflow(OutboundTransferWorkflow):
    """A plausible bad change: the payer's funds held before the quote is requested (two commands swapped)."""

    @workflow.run
    async def run(self, transfer: OutboundTransferInput) -> TransferView:
        return await super().run(transfer)

    async def _transfer(self) -> None:
        if self._input.resume is not None:
            await self._resume_reconciliation(self._input.resume)
            return
        payer = await self._resolve_payer()
        self._payer_account_id = payer.account_id
        sdk_ref = await self._resolve_payee(payer)
        await self._decide_party()
        hold = await self._hold_funds(sdk_ref, self._input.order.amount, self._input.order.currency)  # swapped
        quote = await self._request_quote(sdk_ref)  # swapped
        await self._decide_quote(sdk_ref, quote)
        await self._check_quote_still_valid(sdk_ref, quote, hold)
        await self._settle(hold, await self._send_money(sdk_ref, hold))


def _quote_request_event(history: WorkflowHistory) -> int | None:
    """The id of the event that scheduled the quote request (`send_party_acceptance`), if the run came to it."""
    scheduled = (event for event in history.events if event.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    for event in scheduled:
        if event.activity_task_scheduled_event_attributes.activity_type.name == "send_party_acceptance":
            return int(event.event_id)
    return None


async def test_a_reordered_workflow_fails_to_replay_the_corpus() -> None:
    files = history_files()
    workflows = [*(w for w in WORKFLOWS if w is not OutboundTransferWorkflow), ReorderedOutboundTransferWorkflow]
    outcomes = await replay(files, workflows=workflows)

    quote_requested_at = {corpus_name(path): _quote_request_event(load_history(path)) for path in files}
    reach_the_quote = {name for name, event_id in quote_requested_at.items() if event_id is not None}
    assert "outbound_auto_completed.json" in reach_the_quote
    # Exactly those fail, where the commands were swapped: the recorded quote request has no command to match
    # (the reordered code holds the funds there); the others never come to the swap.
    assert {name for name, failure in outcomes.items() if failure is not None} == reach_the_quote
    for name in reach_the_quote:
        failure = outcomes[name]
        assert isinstance(failure, NondeterminismError), f"{name}: {failure!r}"
        event = f"HistoryEvent(id: {quote_requested_at[name]}, ActivityTaskScheduled)"
        expected = f"[TMPRL1100] Nondeterminism error: No command scheduled for event {event}"
        assert expected in str(failure), f"{name}: {failure}"
