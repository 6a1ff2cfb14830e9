"""Calls to the SDK's outbound API (Payment Manager), and what its answers mean for us.

The SDK runs with AUTO_ACCEPT_PARTY=false and AUTO_ACCEPT_QUOTES=false, so one transfer is three calls:
`POST /transfers` (party lookup), `PUT {"acceptParty": true}` (quote), `PUT {"acceptQuote": true}` (the money
step). Only the last one moves money: `send_quote_acceptance` is run once (`maximum_attempts=1`) and never
raises for an answer it cannot read: it reports `UNKNOWN`, and the workflow reconciles with
`get_switch_state`, trusting only `fulfil.body.transferState` (see DESIGN, "How the real SDK answers").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payee_locks import PayeeLocks
from mojaflow.metrics import measure_phase, measure_sdk_request
from mojaflow.models import PartyView, Payee, Payer, QuoteView, TransferOrder
from mojaflow.sent_requests import SentRequests

__all__ = [
    "MoneyStepResult",
    "PartyLookupResult",
    "PaymentManagerActivities",
    "QuoteResult",
    "SdkFailure",
    "SdkTransferRef",
    "SwitchState",
    "classify_transfer_answer",
    "sdk_transfer_request",
]

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", bound=BaseModel)


class SdkFailure(BaseModel):
    """A refusal or error answered by the SDK, reduced to what we map to our codes (no personal data)."""

    http_status: int
    fspiop_error_code: str | None = None
    description: str | None = None


class SdkTransferRef(BaseModel):
    sdk_transfer_id: str


class MoneyStepResult(BaseModel):
    """What an answer says of the money step. COMMITTED / ABORTED: the switch's answer (`fulfilment` as it
    came; the workflow checks it against the condition). REJECTED: an FSPIOP error callback for the prepare, or
    the SDK's `ABORTED` (the workflow confirms with one `GET` before it releases anything). UNKNOWN: anything
    else (504, lost answer, SDK-internal error): reconcile. `condition` / `sdk_transfer_id`: whatever the SDK's
    body carried of them, also in error answers."""

    outcome: Literal["COMMITTED", "ABORTED", "REJECTED", "UNKNOWN"]
    failure: SdkFailure | None = None
    expiration: datetime | None = None
    fulfilment: str | None = None
    condition: str | None = None
    sdk_transfer_id: str | None = None


class PartyLookupResult(BaseModel):
    """`answered=False`: the request may have reached the SDK but no answer came (timeout, lost connection).
    `went_past`: the answer shows the SDK ran on into the money step (both auto flags on): reconcile it."""

    answered: bool = True
    sdk_transfer_id: str | None = None
    sdk_state: str | None = None
    payee: PartyView | None = None
    failure: SdkFailure | None = None
    went_past: MoneyStepResult | None = None


class QuoteResult(BaseModel):
    """As `PartyLookupResult`; `went_past` when the SDK accepted the quote itself (AUTO_ACCEPT_QUOTES=true)."""

    answered: bool = True
    quote: QuoteView | None = None
    sdk_state: str | None = None
    failure: SdkFailure | None = None
    went_past: MoneyStepResult | None = None


_SWITCH_STATES = ("COMMITTED", "ABORTED", "RESERVED", "RECEIVED")


class SwitchState(BaseModel):
    state: Literal["COMMITTED", "ABORTED", "RESERVED", "RECEIVED", "NOT_FOUND", "UNKNOWN"]
    fulfilment: str | None = None  # `fulfil.body.fulfilment`, as it came
    condition: str | None = None  # any condition the body carried (e.g. `quoteResponse.body.condition`)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _failure(response: httpx.Response) -> SdkFailure:
    return _failure_of(response.status_code, _json(response))


def _failure_of(status: int, body: dict[str, Any]) -> SdkFailure:
    code = str(body.get("statusCode", ""))
    mojaloop_error = ((body.get("transferState") or {}).get("lastError") or {}).get("mojaloopError") or {}
    info = mojaloop_error.get("errorInformation") or {}
    fspiop = info.get("errorCode") or (code if len(code) == 4 and code.isdigit() else None)
    return SdkFailure(http_status=status, fspiop_error_code=fspiop, description=info.get("errorDescription"))


def _raise_if_transient(response: httpx.Response) -> None:
    # 502/503/429: the SDK (or a proxy in front of it) did not take the request; safe to retry.
    if response.status_code in (429, 502, 503):
        raise ApplicationError(f"SDK unavailable: HTTP {response.status_code}", type="SdkUnavailable")


def _payee(body: dict[str, Any]) -> PartyView:
    to = body.get("to") or {}
    party = ((body.get("getPartiesResponse") or {}).get("body") or {}).get("party") or {}
    names = [to.get("firstName"), to.get("middleName"), to.get("lastName")]
    name = party.get("name") or to.get("displayName") or " ".join(n for n in names if n) or None
    return PartyView(name=name, fsp_id=to.get("fspId"))


def _quote(body: dict[str, Any], currency: str) -> QuoteView:
    quote = _message_body(body, "quoteResponse")

    def amount(name: str, default: str = "0") -> str:
        return str((quote.get(name) or {}).get("amount", default))

    return QuoteView(
        quote_id=body.get("quoteId"),
        currency=(quote.get("transferAmount") or {}).get("currency", currency),
        transfer_amount=amount("transferAmount", ""),
        payee_receive_amount=amount("payeeReceiveAmount", ""),
        fees=amount("payeeFspFee"),
        commission=amount("payeeFspCommission"),
        expiration=quote.get("expiration"),
        condition=quote.get("condition"),
    )


def _message_body(body: dict[str, Any], name: str) -> dict[str, Any]:
    """`fulfil.body`, `prepare.body`...: the SDK keeps some FSPIOP bodies as objects, some as JSON strings."""
    inner = (body.get(name) or {}).get("body") or {}
    if isinstance(inner, str):
        try:
            inner = json.loads(inner)
        except ValueError:
            return {}
    return inner if isinstance(inner, dict) else {}


def _switch_state(body: dict[str, Any]) -> str | None:
    return _message_body(body, "fulfil").get("transferState")


def _prepare_expiration(body: dict[str, Any]) -> datetime | None:
    value = _message_body(body, "prepare").get("expiration")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        return None


def _record(body: dict[str, Any]) -> dict[str, Any]:
    """The SDK's transfer record: the body itself (200) or its `transferState` (error answers)."""
    state = body.get("transferState")
    return state if isinstance(state, dict) and state else body


def _condition(body: dict[str, Any]) -> str | None:
    for record in (body, _record(body)):
        for name in ("quoteResponse", "prepare"):
            value = _message_body(record, name).get("condition")
            if isinstance(value, str) and value:
                return value
    return None


def _sdk_transfer_id(body: dict[str, Any]) -> str | None:
    value = body.get("transferId") or _record(body).get("transferId")
    return value if isinstance(value, str) and value else None


def _went_to_money_step(body: dict[str, Any]) -> bool:
    """The answer shows the SDK ran on into the prepare (auto flags on): COMPLETED, or a prepare/fulfil."""
    return any(
        record.get("currentState") == "COMPLETED" or record.get("prepare") or record.get("fulfil")
        for record in (body, _record(body))
    )


def classify_transfer_answer(status: int, body: dict[str, Any]) -> MoneyStepResult:
    """What one SDK answer says of the money step (the acceptQuote PUT, or an answer that went past it)."""
    record = _record(body)
    known: dict[str, Any] = {
        "condition": _condition(body),
        "sdk_transfer_id": _sdk_transfer_id(body),
        "expiration": _prepare_expiration(body) or _prepare_expiration(record),
    }
    if status == 200:
        state = _switch_state(body)
        fulfilment = _message_body(body, "fulfil").get("fulfilment")
        if body.get("currentState") == "COMPLETED" and state == "COMMITTED":
            return MoneyStepResult(outcome="COMMITTED", fulfilment=fulfilment, **known)
        if body.get("currentState") == "COMPLETED" and state == "ABORTED":
            return MoneyStepResult(outcome="ABORTED", fulfilment=fulfilment, **known)
        if body.get("currentState") == "ABORTED":  # the workflow confirms with a GET before any release
            return MoneyStepResult(outcome="REJECTED", failure=SdkFailure(http_status=200), **known)
        return MoneyStepResult(outcome="UNKNOWN", **known)
    failure = _failure_of(status, body)
    last_error = record.get("lastError")
    if status == 500 and isinstance(last_error, dict) and last_error.get("mojaloopError"):
        return MoneyStepResult(outcome="REJECTED", failure=failure, **known)
    # 204 (re-PUT after an error), 500 "No cached data found", 504, anything else: reconcile.
    return MoneyStepResult(outcome="UNKNOWN", failure=failure if status >= 400 else None, **known)


def sdk_transfer_request(order: TransferOrder) -> dict[str, Any]:
    """The SDK's `transferRequest` for an order, field by field (outbound API v2.1.0; `purposeCode` has no place
    there in SDK 18.0.2)."""
    body: dict[str, Any] = {
        "homeTransactionId": order.home_transaction_id,
        "from": _sdk_party(order.payer),
        "to": _sdk_party(order.payee),
        "amountType": order.amount_type,
        "currency": order.currency,
        "amount": order.amount,
        "transactionType": order.transaction_type,
    }
    if order.note:
        body["note"] = order.note
    return body


def _sdk_party(party: Payer | Payee) -> dict[str, Any]:
    """A `transferParty`: the id, and the names and birth date a payer has."""
    fields = party.model_dump(mode="json", by_alias=True, exclude_none=True)
    names = ("idType", "idValue", "idSubValue", "displayName", "firstName", "middleName", "lastName", "dateOfBirth")
    return {name: fields[name] for name in names if name in fields}


_NOT_SENT: Literal["not sent"] = "not sent"
_RETRIES = 3


async def _send_once(
    send: Any, what: str, operation: str, backoff_s: float = 0.5
) -> httpx.Response | Literal["not sent"] | None:
    """Send a request that may reach the money step, retrying only what proves it never left: a connect
    error, or an SDK 503/429. `None`: it may have left and no answer came (do not send it again).
    `"not sent"`: every attempt failed to connect. Each request is measured under `operation` (mojaflow.metrics)."""
    for attempt in range(_RETRIES):
        if attempt:
            await asyncio.sleep(backoff_s * attempt)
        try:
            response = await measure_sdk_request(operation, send)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            log.warning("%s: not sent (%s), attempt %d", what, type(error).__name__, attempt + 1)
            continue
        except httpx.HTTPError as error:
            log.warning("%s: may have left, no answer (%s)", what, type(error).__name__)
            return None
        if response.status_code in (429, 503) and attempt + 1 < _RETRIES:
            continue
        return response
    return _NOT_SENT


def _not_sent_failure() -> SdkFailure:
    return SdkFailure(http_status=503, description="SDK unreachable: request not sent")


class PaymentManagerActivities:
    """Activities against the SDK outbound API. The `httpx.AsyncClient` is built in `worker.py`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        retry_backoff_s: float = 0.5,
        payee_locks: PayeeLocks | None = None,
        sent: SentRequests | None = None,
    ) -> None:
        self._http = client
        self._backoff_s = retry_backoff_s
        # The claims that keep the party lookup and acceptance to one send each (None: unguarded, in unit tests)
        self._sent = sent
        # The worker builds one of these per process: so one set of payee locks per process (activities/payee_locks.py)
        self._payee_locks = PayeeLocks() if payee_locks is None else payee_locks

    @activity.defn
    async def request_party(self, order: TransferOrder) -> PartyLookupResult:
        """`POST /transfers`: resolves the payee. A misconfigured SDK (both auto flags on) runs on to the prepare,
        so it is sent at most once: a local activity that claims it first (mojaflow/sent_requests.py), and sent
        again within this run only when it provably never left. Waits for any lookup of the same payee in this
        process to finish first."""
        payee = order.payee
        with measure_phase("party", "outbound"):
            # One lookup per payee at a time: SDK 18.0.2 breaks on two at once (activities/payee_locks.py)
            async with self._payee_locks.hold(payee.id_type, payee.id_value, payee.id_sub_value):
                return await self._once(lambda: self._look_up_party(order), PartyLookupResult(answered=False))

    async def _look_up_party(self, order: TransferOrder) -> PartyLookupResult:
        body = sdk_transfer_request(order)
        response = await _send_once(
            lambda: self._http.post("/transfers", json=body), "POST /transfers", "request_party", self._backoff_s
        )
        if response is None:
            return PartyLookupResult(answered=False)
        if response == _NOT_SENT:
            return PartyLookupResult(failure=_not_sent_failure())
        assert isinstance(response, httpx.Response)
        answer = _json(response)
        went_past = classify_transfer_answer(response.status_code, answer) if _went_to_money_step(answer) else None
        if response.status_code != 200:
            return PartyLookupResult(
                failure=_failure(response), sdk_transfer_id=_sdk_transfer_id(answer), went_past=went_past
            )
        return PartyLookupResult(
            sdk_transfer_id=answer.get("transferId"),
            sdk_state=answer.get("currentState"),
            payee=_payee(answer),
            went_past=went_past,
        )

    @activity.defn
    async def send_party_acceptance(self, ref: SdkTransferRef) -> QuoteResult:
        """`PUT {"acceptParty": true}`: the SDK asks the payee's FSP for a quote. With AUTO_ACCEPT_QUOTES=true
        it runs on to the prepare, so it is sent at most once, claimed first as the party lookup is."""
        with measure_phase("quote", "outbound"):
            return await self._once(lambda: self._accept_party(ref), QuoteResult(answered=False))

    async def _accept_party(self, ref: SdkTransferRef) -> QuoteResult:
        url = f"/transfers/{ref.sdk_transfer_id}"
        response = await _send_once(
            lambda: self._http.put(url, json={"acceptParty": True}), "PUT acceptParty", "accept_party", self._backoff_s
        )
        if response is None:
            return QuoteResult(answered=False)
        if response == _NOT_SENT:
            return QuoteResult(failure=_not_sent_failure())
        assert isinstance(response, httpx.Response)
        answer = _json(response)
        went_past = classify_transfer_answer(response.status_code, answer) if _went_to_money_step(answer) else None
        if response.status_code != 200:
            return QuoteResult(failure=_failure(response), went_past=went_past)
        return QuoteResult(
            quote=_quote(answer, answer.get("currency", "")), sdk_state=answer.get("currentState"), went_past=went_past
        )

    async def _once(self, send: Callable[[], Awaitable[Answer]], unanswered: Answer) -> Answer:
        """`send()` by the first run of this activity only; a re-run gets the first one's answer, or `unanswered`
        if that run kept none (mojaflow/sent_requests.py)."""
        if self._sent is None:
            return await send()
        return await self._sent.once(send, unanswered)

    @activity.defn
    async def send_quote_decline(self, ref: SdkTransferRef) -> None:
        """`PUT {"acceptQuote": false}`: tells the SDK we will not go on. Moves no money."""
        url = f"/transfers/{ref.sdk_transfer_id}"
        response = await measure_sdk_request("decline_quote", lambda: self._http.put(url, json={"acceptQuote": False}))
        _raise_if_transient(response)

    @activity.defn
    async def send_quote_acceptance(self, ref: SdkTransferRef) -> MoneyStepResult:
        """`PUT {"acceptQuote": true}`: THE MONEY STEP. Sent once; run with `maximum_attempts=1`.

        Heartbeats while the SDK waits for the switch, so a crashed worker is noticed in seconds; never
        raises for the SDK's answer: anything not conclusive is `UNKNOWN`, to be reconciled. Sent again only
        when it provably never left (connect error, SDK 503/429).
        """
        url = f"/transfers/{ref.sdk_transfer_id}"
        with measure_phase("money_step", "outbound"):
            async with _heartbeating():
                response = await _send_once(
                    lambda: self._http.put(url, json={"acceptQuote": True}),
                    "PUT acceptQuote",
                    "accept_quote",
                    self._backoff_s,
                )
        if response is None:  # may have left: reconcile
            return MoneyStepResult(outcome="UNKNOWN", sdk_transfer_id=ref.sdk_transfer_id)
        if response == _NOT_SENT:  # never left, but still UNKNOWN: a GET decides before any release
            return MoneyStepResult(outcome="UNKNOWN", failure=_not_sent_failure(), sdk_transfer_id=ref.sdk_transfer_id)
        assert isinstance(response, httpx.Response)
        result = classify_transfer_answer(response.status_code, _json(response))
        if result.sdk_transfer_id is None:
            result.sdk_transfer_id = ref.sdk_transfer_id
        return result

    @activity.defn
    async def get_switch_state(self, ref: SdkTransferRef) -> SwitchState:
        """`GET /transfers/{id}`: the SDK asks the switch. Only `fulfil.body.transferState` is the truth;
        its `currentState` says COMPLETED whenever the switch answered at all."""
        try:
            url = f"/transfers/{ref.sdk_transfer_id}"
            response = await measure_sdk_request("get_transfer", lambda: self._http.get(url))
        except httpx.HTTPError as error:
            log.warning("reconciliation of SDK transfer %s: %s", ref.sdk_transfer_id, type(error).__name__)
            return SwitchState(state="UNKNOWN")
        answer = _json(response)
        condition = _condition(answer)
        if response.status_code == 200:
            state = _switch_state(answer)
            fulfilment = _message_body(answer, "fulfil").get("fulfilment")
            return SwitchState.model_validate(
                {
                    "state": state if state in _SWITCH_STATES else "UNKNOWN",
                    "fulfilment": fulfilment if isinstance(fulfilment, str) else None,
                    "condition": condition,
                }
            )
        if _failure(response).fspiop_error_code == "3208":
            return SwitchState(state="NOT_FOUND", condition=condition)
        return SwitchState(state="UNKNOWN", condition=condition)


@asynccontextmanager
async def _heartbeating(every_s: float = 2.0) -> Any:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
