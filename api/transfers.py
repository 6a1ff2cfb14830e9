"""`/transfers` on the client API (CBS-facing): start, decide, read and list transfers."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.auth import AUTH_RESPONSES
from api.dependencies import CallerDep, TransfersDep
from api.headers import MoneyMovementHeadersDep
from api.prefer import WaitPreference, parse_prefer
from api.problems import Problem, problem_responses
from api.transfer_service import Outcome
from mojaflow.models import AcceptanceDecision, CamelModel, Direction, TransferRequest, TransferState, TransferView

__all__ = ["router"]

router = APIRouter(prefix="/transfers", tags=["transfers"])


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
    return {"model": TransferView, "description": description, "headers": headers}


def _answer(outcome: Outcome, wait: WaitPreference | None = None) -> JSONResponse:
    headers = {"Location": f"/transfers/{outcome.view.transfer_id}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait is not None and wait.applied:
        headers["Preference-Applied"] = wait.applied
    body = outcome.view.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(body, status_code=outcome.status, headers=headers)


@router.post(
    "",
    response_model=TransferView,
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
    _caller: CallerDep, body: TransferRequest, headers: MoneyMovementHeadersDep, wait: WaitDep, transfers: TransfersDep
) -> JSONResponse:
    """Start an outbound transfer; answers once it needs a decision or is final, or 202 after the wait."""
    return _answer(await transfers.create(headers, body, wait.wait_s), wait)


@router.put(
    "/{transfer_id}",
    response_model=TransferView,
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
    return _answer(await transfers.decide(caller, headers, transfer_id, body, wait.wait_s), wait)


@router.get(
    "/{transfer_id}",
    response_model=TransferView,
    response_model_exclude_none=True,
    responses={**problem_responses({400: ["invalid_header"], 404: ["transfer_not_found"]}), **AUTH_RESPONSES},
)
async def get_transfer(caller: CallerDep, transfer_id: str, transfers: TransfersDep) -> TransferView:
    """A transfer by our transferId or the SDK's; answered from our database, also after Temporal's retention.
    The caller's own only (an operator's: any); another client's is 404, as an unknown id."""
    return await transfers.get(caller, transfer_id)


class TransferPage(CamelModel):
    items: list[TransferView]
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
) -> TransferPage:
    """Newest first: the caller's transfers (an operator's: everyone's, inbound ones too), filtered and paginated."""
    rows = await transfers.list(
        caller,
        direction=direction,
        state=state,
        home_transaction_id=home_transaction_id,
        limit=limit + 1,
        after=_decode_cursor(cursor) if cursor else None,
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0].transfer_id) if len(rows) > limit else None
    return TransferPage(items=[view for view, _ in page], next_cursor=next_cursor)
