"""`/transfers` on the client API (CBS-facing): start, decide, read and list transfers."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.dependencies import TransfersDep
from api.headers import MoneyMovementHeadersDep
from api.prefer import WaitPreference, parse_prefer
from api.problems import Problem
from api.transfer_service import Outcome
from mojaflow.models import AcceptanceDecision, CamelModel, Direction, TransferRequest, TransferState, TransferView

__all__ = ["router"]

router = APIRouter(prefix="/transfers", tags=["transfers"])


def _wait(request: Request) -> WaitPreference:
    return parse_prefer(request.headers.get("prefer"), request.app.state.settings.default_wait_s)


WaitDep = Annotated[WaitPreference, Depends(_wait)]


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
    responses={200: {"description": "Idempotent replay"}, 202: {"description": "Accepted, still in progress"}},
)
async def create_transfer(
    body: TransferRequest, headers: MoneyMovementHeadersDep, wait: WaitDep, transfers: TransfersDep
) -> JSONResponse:
    """Start an outbound transfer; answers once it needs a decision or is final, or 202 after the wait."""
    return _answer(await transfers.create(headers, body, wait.wait_s), wait)


@router.put("/{transfer_id}", response_model=TransferView)
async def decide_transfer(
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
    return _answer(await transfers.decide(headers, transfer_id, body, wait.wait_s), wait)


@router.get("/{transfer_id}", response_model=TransferView, response_model_exclude_none=True)
async def get_transfer(transfer_id: str, transfers: TransfersDep) -> TransferView:
    """A transfer by our transferId or the SDK's; answered from our database, also after Temporal's retention."""
    return await transfers.get(transfer_id)


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


@router.get("", response_model=TransferPage, response_model_exclude_none=True)
async def list_transfers(
    transfers: TransfersDep,
    direction: Direction | None = None,
    state: TransferState | None = None,
    home_transaction_id: Annotated[str | None, Query(alias="homeTransactionId", max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> TransferPage:
    """Newest first, for the back office: outbound and inbound alike, filtered and paginated."""
    rows = await transfers.list(
        direction=direction,
        state=state,
        home_transaction_id=home_transaction_id,
        limit=limit + 1,
        after=_decode_cursor(cursor) if cursor else None,
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0].transfer_id) if len(rows) > limit else None
    return TransferPage(items=[view for view, _ in page], next_cursor=next_cursor)
