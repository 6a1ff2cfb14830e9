"""The deploy safety net: the committed corpus of histories (tests/histories/, one per path, recorded by
`make record-histories`) replays through the sandbox against this commit's workflow code. A change that would
break the workflows already running in a deployment fails here, before it ships; the negative control shows that
it does, with a deliberately changed OutboundTransferWorkflow (a save dropped before the money step).

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
from temporalio.exceptions import ActivityError
from temporalio.workflow import NondeterminismError

from worker import WORKFLOWS
from workflows.outbound_transfer import MONEY_CALL, OutboundTransferWorkflow

# The sandbox re-imports this module for the reordered workflow below: what it needs outside a workflow is
# passed through, not re-imported (reading the corpus's files is no workflow's business).
with workflow.unsafe.imports_passed_through():
    from activities.core_banking import HoldRef
    from activities.payment_manager import MoneyStepResult, PaymentManagerActivities, SdkTransferRef
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
    """A plausible bad change: the money step sent before its TRANSFERRING state is saved (one command dropped)."""

    @workflow.run
    async def run(self, transfer: OutboundTransferInput) -> TransferView:
        return await super().run(transfer)

    async def _send_money(self, sdk_ref: SdkTransferRef, hold: HoldRef) -> MoneyStepResult:
        self._money_may_have_left = True
        try:
            result = await workflow.execute_activity_method(
                PaymentManagerActivities.send_quote_acceptance, sdk_ref, **MONEY_CALL
            )
        except ActivityError:
            result = MoneyStepResult(outcome="UNKNOWN")
        return await self._conclude(sdk_ref, hold, result)


def _money_step_event(history: WorkflowHistory) -> int | None:
    """The id of the event that scheduled the money step (`send_quote_acceptance`), if the run came to it."""
    scheduled = (event for event in history.events if event.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    for event in scheduled:
        if event.activity_task_scheduled_event_attributes.activity_type.name == "send_quote_acceptance":
            return int(event.event_id)
    return None


async def test_a_reordered_workflow_fails_to_replay_the_corpus() -> None:
    """A normal activity's command is matched to its recorded event by type: dropping the save before it fails
    with a nondeterminism error. (Temporal matches a local activity's marker by its sequence number alone, so two
    swapped local activities fail only if their results do not decode as each other's: their order is kept by
    reading, not by this net.)"""
    files = history_files()
    workflows = [*(w for w in WORKFLOWS if w is not OutboundTransferWorkflow), ReorderedOutboundTransferWorkflow]
    outcomes = await replay(files, workflows=workflows)

    money_step_at = {corpus_name(path): _money_step_event(load_history(path)) for path in files}
    reach_the_money_step = {name for name, event_id in money_step_at.items() if event_id is not None}
    assert "outbound_auto_completed.json" in reach_the_money_step
    # Exactly those fail, where the save was dropped; the others never come to it.
    assert {name for name, failure in outcomes.items() if failure is not None} == reach_the_money_step
    for name in reach_the_money_step:
        failure = outcomes[name]
        assert isinstance(failure, NondeterminismError), f"{name}: {failure!r}"
        # the recorded TRANSFERRING save has no local activity left to resolve
        assert "[TMPRL1100] Nondeterminism error: Missing associated machine for LocalActivity" in str(failure), name
