"""The outbound transfer state machine of SDK 18.0.2 (manual or auto acceptance), against a fake switch.

It reproduces what matters for a connector's safety, not just the happy path:

* `POST /transfers` is not idempotent: every call makes a new transferId.
* `PUT /transfers/{id}` merges `acceptParty` / `acceptQuote` into the stored record and resumes from the stored
  state. The money step (`acceptQuote: true` while waiting for quote acceptance) keeps the record in memory until
  the switch answers, so a second PUT meanwhile finds the old state and sends a *second prepare* (no lock).
* Re-PUT after COMPLETED or ABORTED → 200 with the record; after ERROR_OCCURRED → 204 without a body.
* `GET /transfers/{id}` asks the switch and overwrites the stored record with a new one whose `currentState` is
  COMPLETED whenever the switch knows the transfer, whatever its `transferState`; 3208 (500) when it does not.
* Auto-accept (`--auto-accept` / FaultSpec `autoAccept`): party → POST runs on to the quote; quotes → the
  `acceptParty` PUT runs on to the prepare; both → POST answers COMPLETED. Every prepare is counted.
* Slow party lookup / quote (FaultSpec `partyLookupDelayS` / `acceptPartyDelayS`): the request is counted as it
  arrives, then held open; the SDK goes on with it after the caller has gone away.
* `No cached data found` (500) bodies carry an empty `transferState`, as the real SDK's; all other error bodies
  carry the record with its transferId.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from simulators._common import iso_now
from simulators.sdk_fspiop import (
    condition_for,
    error_response,
    fulfil_record,
    mojaloop_error,
    new_fulfilment,
    party_lookup,
    prepare_record,
    quote_records,
)
from simulators.sdk_models import FaultSpec, TransferContinuation, TransferRequest
from simulators.sdk_store import SdkStore, StoredTransfer

__all__ = ["Answer", "TransferEngine"]

PARTY_NOT_FOUND_ID = "25600000404"
PARTY_TIMEOUT_ID = "25600000408"
QUOTE_REJECTED_AMOUNT = Decimal(500)
TRANSFER_REJECTED_AMOUNT = Decimal(600)
_HANG_POLL_S = 0.2

log = logging.getLogger("simulators.sdk")


@dataclass(frozen=True)
class Answer:
    """HTTP status and JSON body (None → no body, as the SDK's 204)."""

    status: int
    body: dict[str, Any] | None


def _errinfo_text(code: str, description: str) -> str:
    """How the SDK prints a Mojaloop error object inside its `message` (Node's util.inspect style)."""
    return f"{{\n  errorInformation: {{ errorCode: '{code}', errorDescription: '{description}' }}\n}}"


async def _never_disconnected() -> bool:
    return False


def _no_cached_data(transfer_id: str) -> Answer:
    """As captured (out_put_unknown_id): the SDK has no record, so `transferState` is empty."""
    return Answer(500, error_response(f"No cached data found for transferId: {transfer_id}", "500", {}))


class TransferEngine:
    """Handles the outbound transfer calls; all state lives in `SdkStore`."""

    def __init__(
        self, store: SdkStore, party_timeout_s: float, expiry_s: float = 60.0, auto_accept: str = "none"
    ) -> None:
        self.store = store
        self.auto_accept = auto_accept  # the simulator-wide AUTO_ACCEPT_PARTY / AUTO_ACCEPT_QUOTES
        self._get_counts: dict[str, int] = {}  # GETs answered per transfer (for notFoundAnswers)
        self._tasks: set[asyncio.Task[None]] = set()
        self.party_timeout_s = party_timeout_s
        self.expiry_s = expiry_s  # the SDK's EXPIRY_SECONDS: the prepare's expiration

    # -- POST /transfers ---------------------------------------------------------------------------------------
    async def create(self, request: TransferRequest) -> Answer:
        """Party lookup; stops in WAITING_FOR_PARTY_ACCEPTANCE (or 3204 / 504 for the magic party ids)."""
        self.store.count_arrival(request.home_transaction_id, "partyLookups")
        delay_s = self.store.get_faults(request.home_transaction_id).party_lookup_delay_s
        if delay_s:
            await asyncio.sleep(delay_s)
        transfer_id = str(uuid.uuid4())
        record: dict[str, Any] = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        record.update(
            transferId=transfer_id,
            currentState="WAITING_FOR_PARTY_ACCEPTANCE",
            initiatedTimestamp=iso_now(),
            direction="OUTBOUND",
        )
        lookup = party_lookup(record["to"])
        answer: Answer
        if request.to_party.id_value == PARTY_TIMEOUT_ID:
            await asyncio.sleep(self.party_timeout_s)
            record.update(getPartiesRequest=lookup["getPartiesRequest"], currentState="ERROR_OCCURRED")
            record["lastError"] = {"httpStatusCode": 504}
            answer = Answer(504, error_response(f"Timeout resolving payee for transfer {transfer_id}", "504", record))
        elif request.to_party.id_value == PARTY_NOT_FOUND_ID:
            error = mojaloop_error("3204", "Party not found")
            record.update(
                getPartiesRequest=lookup["getPartiesRequest"],
                getPartiesResponse={
                    "headers": lookup["getPartiesResponse"]["headers"],
                    "body": error["mojaloopError"],
                },
                currentState="ERROR_OCCURRED",
                lastError=error,
            )
            message = "Got an error response resolving party: " + _errinfo_text("3204", "Party not found")
            answer = Answer(500, error_response(message, "3204", record))
        else:
            record.update(lookup)
            answer = Answer(200, record)
        self.store.insert_transfer(transfer_id, request.home_transaction_id, record, new_fulfilment())
        log.info("transfer %s created: %s", transfer_id, record["currentState"])
        faults = self.store.get_faults(request.home_transaction_id)
        if answer.status == 200 and self._auto(faults) in ("party", "both"):
            stored = self.store.get_transfer(transfer_id)
            assert stored is not None
            return await self._quote_then(stored, dict(record), faults, _never_disconnected)
        return answer

    def _auto(self, faults: FaultSpec) -> str:
        return faults.auto_accept or self.auto_accept

    async def _quote_then(
        self,
        stored: StoredTransfer,
        record: dict[str, Any],
        faults: FaultSpec,
        is_disconnected: Callable[[], Awaitable[bool]],
    ) -> Answer:
        """The quote; with AUTO_ACCEPT_QUOTES the SDK runs on to the prepare (the money step) at once."""
        answer = self._request_quote(stored, record, faults)
        if answer.status == 200 and self._auto(faults) in ("quotes", "both"):
            return await self._execute_transfer(stored, record, faults, is_disconnected)
        return answer

    # -- PUT /transfers/{id} -------------------------------------------------------------------------------------
    async def resume(
        self, transfer_id: str, body: TransferContinuation, is_disconnected: Callable[[], Awaitable[bool]]
    ) -> Answer:
        """Merge the acceptance into the stored record and run the next step from the stored state."""
        stored = self.store.get_transfer(transfer_id)
        if stored is None:
            return _no_cached_data(transfer_id)
        if body.accept_party is not None:
            self.store.count_arrival(stored.home_transaction_id, "partyAcceptances")
            delay_s = self.store.get_faults(stored.home_transaction_id).accept_party_delay_s
            if delay_s:
                await asyncio.sleep(delay_s)
                stored = self.store.get_transfer(transfer_id) or stored  # as it is now, after the wait
        record = dict(stored.record)
        record.update(body.model_dump(by_alias=True, exclude_none=True))
        state = record.get("currentState")
        faults = self.store.get_faults(stored.home_transaction_id)
        if state == "WAITING_FOR_PARTY_ACCEPTANCE":
            if record.get("acceptParty") is not True:
                return self._abort(transfer_id, record, "Payee rejected by backend")
            return await self._quote_then(stored, record, faults, is_disconnected)
        if state == "WAITING_FOR_QUOTE_ACCEPTANCE":
            if record.get("acceptQuote") is not True:
                return self._abort(transfer_id, record, "Quote rejected by backend")
            return await self._execute_transfer(stored, record, faults, is_disconnected)
        self.store.save_record(transfer_id, record)
        if state == "ERROR_OCCURRED":
            return Answer(204, None)
        return Answer(200, record)  # COMPLETED or ABORTED: the saved transfer, nothing sent

    def _abort(self, transfer_id: str, record: dict[str, Any], reason: str) -> Answer:
        record.update(currentState="ABORTED", abortedReason=reason)
        self.store.save_record(transfer_id, record)
        log.info("transfer %s aborted", transfer_id)
        return Answer(200, record)

    def _request_quote(self, stored: StoredTransfer, record: dict[str, Any], faults: FaultSpec) -> Answer:
        quote = quote_records(record, faults, condition_for(stored.fulfilment))
        if Decimal(record["amount"]) == QUOTE_REJECTED_AMOUNT:
            record.update(
                quoteId=quote["quoteId"],
                quoteRequest=quote["quoteRequest"],
                currentState="ERROR_OCCURRED",
                lastError=mojaloop_error("5101", "Payee rejected quote"),
            )
            self.store.save_record(stored.transfer_id, record)
            message = "Got an error response requesting quote: " + _errinfo_text("5101", "Payee rejected quote")
            return Answer(500, error_response(message, "5101", record))
        record.update(quote)
        record["currentState"] = "WAITING_FOR_QUOTE_ACCEPTANCE"
        self.store.save_record(stored.transfer_id, record)
        log.info("transfer %s quoted", stored.transfer_id)
        return Answer(200, record)

    async def _execute_transfer(
        self,
        stored: StoredTransfer,
        record: dict[str, Any],
        faults: FaultSpec,
        is_disconnected: Callable[[], Awaitable[bool]],
    ) -> Answer:
        """The money step: the prepare reaches the switch at once (unless lost); the answer follows the faults."""
        transfer_id = stored.transfer_id
        expiry_s = faults.prepare_expires_in_s if faults.prepare_expires_in_s is not None else self.expiry_s
        record["prepare"] = prepare_record(record, expiry_s)
        count = self.store.count_prepare(transfer_id)
        answer_mode = faults.money_step_answer
        default = "ABORTED" if Decimal(record["amount"]) == TRANSFER_REJECTED_AMOUNT else "COMMITTED"
        if answer_mode in ("aborted_200", "fulfil_aborted"):
            default = "ABORTED"
        elif answer_mode == "error_callback":
            default = "COMMITTED"
        outcome = faults.switch_outcome or default
        fulfilment = stored.fulfilment if outcome == "COMMITTED" else None
        if faults.prepare_lost:
            pass
        elif faults.prepare_arrives_after_s:
            task = asyncio.create_task(self._late_prepare(transfer_id, outcome, fulfilment, faults))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.store.set_switch(transfer_id, outcome, iso_now(), fulfilment)
        log.info("transfer %s prepare #%d sent (lost=%s)", transfer_id, count, faults.prepare_lost)

        if answer_mode == "hang":
            while not await is_disconnected():
                await asyncio.sleep(_HANG_POLL_S)
            log.info("transfer %s: client gave up on a hanging money step", transfer_id)
            return Answer(504, None)
        if faults.money_step_delay_s:
            await asyncio.sleep(faults.money_step_delay_s)

        entry = self.store.get_switch(transfer_id)
        if answer_mode == "no_cached_data":
            return _no_cached_data(transfer_id)
        if answer_mode == "timeout" or (entry is None and answer_mode not in ("aborted_200", "error_callback")):
            record.update(currentState="ERROR_OCCURRED", lastError={"httpStatusCode": 504})
            self.store.save_record(transfer_id, record)
            message = f"Timeout waiting for fulfil for transfer {transfer_id}"
            return Answer(504, error_response(message, "504", record))
        if answer_mode == "error_callback" or (answer_mode == "normal" and entry and entry.transfer_state == "ABORTED"):
            record.update(
                currentState="ERROR_OCCURRED", lastError=mojaloop_error("5105", "Payee FSP rejected transaction")
            )
            self.store.save_record(transfer_id, record)
            message = "Got an error response preparing transfer: " + (
                "{\n  errorInformation: {\n    errorCode: '5105',\n"
                "    errorDescription: 'Payee FSP rejected transaction'\n  }\n}"
            )
            return Answer(500, error_response(message, "5105", record))
        if answer_mode == "aborted_200":
            record["currentState"] = "ABORTED"
            self.store.save_record(transfer_id, record)
            return Answer(200, record)
        assert entry is not None
        state = "ABORTED" if answer_mode == "fulfil_aborted" else entry.transfer_state
        record["fulfil"] = self._fulfil(stored, faults, state, entry)
        record["currentState"] = "COMPLETED"
        self.store.save_record(transfer_id, record)
        log.info("transfer %s completed: %s", transfer_id, state)
        return Answer(200, record)

    async def _late_prepare(self, transfer_id: str, outcome: str, fulfilment: str | None, faults: FaultSpec) -> None:
        """The prepare reaches the switch late: until then the switch does not know the transfer (3208)."""
        await asyncio.sleep(faults.prepare_arrives_after_s or 0.0)
        self.store.set_switch(transfer_id, outcome, iso_now(), fulfilment)
        log.info("transfer %s: late prepare reached the switch (%s)", transfer_id, outcome)

    def _fulfil(self, stored: StoredTransfer | None, faults: FaultSpec, state: str, entry: Any) -> dict[str, Any]:
        """The fulfil record, its fulfilment shaped by the `fulfilment` fault."""
        fulfil = fulfil_record(state, entry.completed_timestamp, entry.fulfilment)
        body = fulfil["body"]
        if "fulfilment" in body and stored is not None:
            if faults.fulfilment == "wrong":
                body["fulfilment"] = new_fulfilment()
            elif faults.fulfilment == "other_transfer":
                body["fulfilment"] = self.store.other_fulfilment(stored.transfer_id) or new_fulfilment()
            elif faults.fulfilment == "missing":
                del body["fulfilment"]
        return fulfil

    # -- GET /transfers/{id} -------------------------------------------------------------------------------------
    async def get(self, transfer_id: str) -> Answer:
        """Ask the switch; rebuild and store the record as the SDK does."""
        stored = self.store.get_transfer(transfer_id)
        faults = self.store.get_faults(stored.home_transaction_id) if stored else FaultSpec()
        record: dict[str, Any] = {
            "transferId": transfer_id,
            "currentState": "COMPLETED",
            "initiatedTimestamp": iso_now(),
            "direction": "OUTBOUND",
        }
        entry = self.store.get_switch(transfer_id)
        seen = self._get_counts.get(transfer_id, 0) + 1
        self._get_counts[transfer_id] = seen
        if seen <= faults.not_found_answers:
            entry = None
        if faults.get_answer == "timeout":
            record.update(currentState="ERROR_OCCURRED", lastError={"httpStatusCode": 504})
            answer = Answer(504, error_response(f"Timeout getting transfer {transfer_id}", "504", record))
        elif entry is None:
            record.update(currentState="ERROR_OCCURRED", lastError=mojaloop_error("3208", "Transfer ID not found"))
            message = "Got an error response retrieving transfer: " + _errinfo_text("3208", "Transfer ID not found")
            answer = Answer(500, error_response(message, "3208", record))
        else:
            record["fulfil"] = self._fulfil(stored, faults, entry.transfer_state, entry)
            answer = Answer(200, record)
        if stored is not None:
            self.store.save_record(transfer_id, record)
        return answer
