"""`/transfers` on the client API (CBS-facing): start, decide, read and list transfers.

The door of our own dialect: Money Movement headers required, RFC 9457 problems. It turns requests into the
service's commands (`api.commands`) and the service's domain errors (`api.errors`) into problems.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field

from api.auth import AUTH_RESPONSES, Caller
from api.commands import Acceptance, DecideTransfer, Outcome, Requester, StartTransfer
from api.dependencies import CallerDep, ReaderDep, TransfersDep
from api.errors import (
    HomeTransactionMismatch,
    IdempotencyKeyReused,
    InvalidState,
    TemporalUnavailable,
    TransferNotFound,
)
from api.headers import MoneyMovementHeaders, MoneyMovementHeadersDep
from api.idempotency import request_hash, transfers_key
from api.prefer import WaitPreference, parse_prefer
from api.problems import Problem, problem_responses
from mojaflow.models import (
    FINAL_STATES,
    AcceptanceDecision,
    CamelModel,
    Direction,
    TransferRequest,
    TransferState,
    TransferView,
)

__all__ = ["TransferResource", "router", "transfer_resource"]

router = APIRouter(prefix="/transfers", tags=["transfers"])


class FulfilBody(CamelModel):
    transfer_state: Literal["COMMITTED", "ABORTED"] = Field(
        description="What the switch did: COMMITTED (money moved) or ABORTED (none moved)"
    )
    completed_timestamp: str | None = None


class Fulfil(CamelModel):
    body: FulfilBody


class TransferResource(TransferView):
    """The transfer resource as every `/transfers` answer shows it: the transfer, and once it is final `fulfil`
    (the shape the pm4ml Send Money API's `transferStatusResponse` reads)."""

    fulfil: Fulfil | None = None


def transfer_resource(view: TransferView) -> dict[str, Any]:
    """A transfer as JSON, with `fulfil` once final: COMMITTED when money moved (completed, committed, or
    committed at the switch with a settlement that needs a person), else ABORTED."""
    resource = view.model_dump(mode="json", by_alias=True, exclude_none=True)
    if view.current_state in FINAL_STATES:
        moved = view.current_state in (TransferState.COMPLETED, TransferState.COMMITTED) or (
            view.last_error is not None and view.last_error.code == "settlement_failed"
        )
        body: dict[str, str] = {"transferState": "COMMITTED" if moved else "ABORTED"}
        if view.timestamps.finished_at is not None:
            body["completedTimestamp"] = _timestamp(view.timestamps.finished_at)
        resource["fulfil"] = {"body": body}
    return resource


def _timestamp(value: datetime) -> str:
    """Mojaloop's DateTime: milliseconds and `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@contextmanager
def _as_problems() -> Iterator[None]:
    """The service's domain errors in this door's dialect."""
    try:
        yield
    except IdempotencyKeyReused:
        detail = "idempotent_request_key was already used with a different request body"
        raise Problem(422, "idempotency_key_reused", "Idempotency key reused", detail) from None
    except TransferNotFound as missing:
        raise _not_found(missing.transfer_id) from None
    except InvalidState as refused:
        raise Problem(409, "invalid_state", "Transfer not in that state", refused.detail) from None
    except HomeTransactionMismatch as mismatch:  # this door sends none: not expected
        raise Problem(422, "validation_error", "Invalid request", str(mismatch)) from None
    except TemporalUnavailable:
        detail = "the workflow service did not answer; retry"
        raise Problem(503, "temporal_unavailable", "Temporal unavailable", detail) from None


def _not_found(transfer_id: str) -> Problem:
    """404 for both kinds of client: a problem that also carries the pm4ml `{statusCode, message}`."""
    detail = f"no transfer with id {transfer_id}"
    return Problem(404, "transfer_not_found", "Transfer not found", detail, pm4ml=("3208", "transfer_not_found"))


def _requester(caller: Caller, headers: MoneyMovementHeaders) -> Requester:
    return Requester(headers.client_key, caller.actor, headers.product, headers.payment_channel)


def _wait(request: Request) -> WaitPreference:
    return parse_prefer(request.headers.get("prefer"), request.app.state.settings.default_wait_s)


WaitDep = Annotated[WaitPreference, Depends(_wait)]

# What the published document says about `Prefer` and the headers `_answer` sets (read by hand, so undeclared).
_PREFER = {
    "parameters": [
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "RFC 7240: `wait=N` (seconds, at most 60) or `respond-async`; "
            "without it, MOJAFLOW_DEFAULT_WAIT_S",
        }
    ]
}
_LOCATION = {"description": "`/transfers/{transferId}`", "required": True, "schema": {"type": "string"}}
_PREFERENCE_APPLIED = {
    "description": "The `Prefer` honoured: `wait=N` or `respond-async`",
    "schema": {"type": "string"},
}
_REPLAYED = {"description": "`true`: the answer to a request already made with this key", "schema": {"const": "true"}}


def _documented(description: str, *, replay: bool = False) -> dict[str, Any]:
    """A 200/201/202 answer: a `TransferView` with its headers (`Idempotent-Replayed` always there on a replay)."""
    replayed = {**_REPLAYED, "required": True} if replay else _REPLAYED
    headers = {"Location": _LOCATION, "Preference-Applied": _PREFERENCE_APPLIED, "Idempotent-Replayed": replayed}
    return {"model": TransferResource, "description": description, "headers": headers}


def _answer(outcome: Outcome, status: int, wait: WaitPreference | None = None) -> JSONResponse:
    headers = {"Location": f"/transfers/{outcome.view.transfer_id}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait is not None and wait.applied:
        headers["Preference-Applied"] = wait.applied
    return JSONResponse(transfer_resource(outcome.view), status_code=status, headers=headers)


@router.post(
    "",
    response_model=TransferResource,
    status_code=201,
    openapi_extra=_PREFER,
    responses={
        200: _documented("Idempotent replay: the transfer this key started, as it stands now", replay=True),
        201: _documented("Started; within the wait it came to need a decision (`WAITING_FOR_…`) or ended"),
        202: _documented("Started, not yet in a state worth answering: poll `Location` or await the webhooks"),
        **problem_responses(
            {
                400: ["invalid_header", "malformed_json"],
                422: ["validation_error", "idempotency_key_reused"],
                503: ["temporal_unavailable"],
            }
        ),
        **AUTH_RESPONSES,
    },
)
async def create_transfer(
    caller: CallerDep, body: TransferRequest, headers: MoneyMovementHeadersDep, wait: WaitDep, transfers: TransfersDep
) -> JSONResponse:
    """Start an outbound transfer; answers once it needs a decision or is final, or 202 after the wait."""
    command = StartTransfer(
        requester=_requester(caller, headers),
        order=body.order(),
        idempotency=transfers_key(headers.client_key, headers.idempotent_request_key),
        fingerprint=request_hash(body.model_dump(mode="json", by_alias=True, exclude_none=True)),
        acceptance=Acceptance(party=body.auto_accept_party, quote=body.auto_accept_quote),
    )
    with _as_problems():
        outcome = await transfers.create(command, wait.wait_s)
    return _answer(outcome, 200 if outcome.replayed else 201 if outcome.settled else 202, wait)


@router.put(
    "/{transfer_id}",
    response_model=TransferResource,
    openapi_extra=_PREFER,
    responses={
        200: _documented("Decided: the next state worth answering (or, with `Idempotent-Replayed`, a replay)"),
        202: _documented("The decision is delivered (or being delivered); its next state is not known yet"),
        **problem_responses(
            {
                400: ["invalid_header", "malformed_json"],
                404: ["transfer_not_found"],
                409: ["invalid_state"],
                422: ["validation_error", "idempotency_key_reused"],
                503: ["temporal_unavailable"],
            }
        ),
        **AUTH_RESPONSES,
    },
)
async def decide_transfer(
    caller: CallerDep,
    transfer_id: str,
    body: AcceptanceDecision,
    headers: MoneyMovementHeadersDep,
    wait: WaitDep,
    transfers: TransfersDep,
) -> JSONResponse:
    """Accept or reject the payee (`acceptParty`) or the quote (`acceptQuote`); answers with the next state."""
    if (body.accept_party is None) == (body.accept_quote is None):
        raise Problem(
            422, "validation_error", "Invalid request", "body: send exactly one of acceptParty or acceptQuote"
        )
    command = DecideTransfer(
        requester=_requester(caller, headers),
        transfer_id=transfer_id,
        idempotency_key=headers.idempotent_request_key,
        accept_party=body.accept_party,
        accept_quote=body.accept_quote,
    )
    with _as_problems():
        outcome = await transfers.decide(command, wait.wait_s)
    return _answer(outcome, 200 if outcome.settled else 202, wait)


@router.get(
    "/{transfer_id}",
    response_model=TransferResource,
    responses={**problem_responses({400: ["invalid_header"], 404: ["transfer_not_found"]}), **AUTH_RESPONSES},
)
async def get_transfer(caller: ReaderDep, transfer_id: str, transfers: TransfersDep) -> JSONResponse:
    """A transfer by our transferId or the SDK's; answered from our database, also after Temporal's retention.
    The caller's own only (an operator's: any); another client's is 404, as an unknown id. No Money Movement
    headers needed: it serves the Send Money API's clients too (with MOJAFLOW_SEND_MONEY_AUTH=none, a caller
    without a credential reads the bank's own outbound transfers)."""
    with _as_problems():
        view = await transfers.get(caller, transfer_id)
    return JSONResponse(transfer_resource(view))


_FROM = "Received at or after this time (ISO 8601 with an offset, e.g. `2026-12-03T00:00:00Z`)"
_TO = "Received before this time (ISO 8601 with an offset); with `from`, a half-open range"


class TransferPage(CamelModel):
    items: list[TransferResource]
    next_cursor: str | None = None


def _encode_cursor(created_at: datetime, transfer_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{transfer_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, transfer_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), transfer_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "invalid_cursor", "Invalid cursor", "cursor is not one this API returned") from None


@router.get(
    "",
    response_model=TransferPage,
    response_model_exclude_none=True,
    responses={
        **problem_responses({400: ["invalid_cursor", "invalid_header"], 422: ["validation_error"]}),
        **AUTH_RESPONSES,
    },
)
async def list_transfers(
    caller: CallerDep,
    transfers: TransfersDep,
    direction: Direction | None = None,
    state: TransferState | None = None,
    home_transaction_id: Annotated[str | None, Query(alias="homeTransactionId", max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    created_from: Annotated[AwareDatetime | None, Query(alias="from", description=_FROM)] = None,
    created_to: Annotated[AwareDatetime | None, Query(alias="to", description=_TO)] = None,
) -> TransferPage:
    """Newest first: the caller's transfers (an operator's: everyone's, inbound ones too), filtered and paginated;
    `from`/`to`: received in that time range (e.g. a day, for the bank's end-of-day reconciliation)."""
    if created_from is not None and created_to is not None and created_from >= created_to:
        raise Problem(422, "validation_error", "Invalid request", "query.from: must be before query.to")
    rows = await transfers.list(
        caller,
        direction=direction,
        state=state,
        home_transaction_id=home_transaction_id,
        limit=limit + 1,
        after=_decode_cursor(cursor) if cursor else None,
        created_from=created_from,
        created_to=created_to,
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0].transfer_id) if len(rows) > limit else None
    items = [TransferResource.model_validate(transfer_resource(view)) for view, _ in page]
    return TransferPage(items=items, next_cursor=next_cursor)
