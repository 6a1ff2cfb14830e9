"""Routes of the backend API, as the SDK calls them (`sdk-scheme-adapter-backend-v2_1_0`)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.backend.errors import BackendError, error_responses
from api.backend.service import InboundService
from mojaflow.inbound_models import NotificationBody, QuoteRequestBody, TransferBody

__all__ = ["router"]

router = APIRouter(tags=["backend"])

# The error answers of each route (`{statusCode, message}`), as the published document shows them.
_CBS_REFUSALS = ["3100", "5100", "5106", "5200", "5400"]
_PARTY_ERRORS = error_responses({400: _CBS_REFUSALS, 404: ["3204"], 503: ["2003"]})
_QUOTE_ERRORS = error_responses({400: ["3101", *_CBS_REFUSALS], 404: ["3204"], 503: ["2003"]})
_TRANSFER_ERRORS = error_responses({400: ["3101", *_CBS_REFUSALS, "5105"], 404: ["3204"], 503: ["2003"]})
# 5106 (in _CBS_REFUSALS): also a currency outside MOJAFLOW_CURRENCIES, refused before any lookup
_NOTIFICATION_ERRORS = error_responses({400: ["3100", "3101"], 503: ["2003"]})
_READ_ERRORS = error_responses({400: ["3100"], 404: ["3208"]})

_ID_TYPE = re.compile(r"^[A-Z_]{1,32}$")
_ID_VALUE = re.compile(r"^(?!\.+$)[A-Za-z0-9_.@+:-]{1,128}$")
_TRANSFER_ID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$|^[0-9A-HJKMNP-TV-Z]{26}$"
)


def _service(request: Request) -> InboundService:
    return request.app.state.inbound


InboundDep = Annotated[InboundService, Depends(_service)]


def _check_party_path(id_type: str, id_value: str, id_sub_value: str | None) -> None:
    if not _ID_TYPE.match(id_type):
        raise BackendError(400, "3100", "idType: must be a Mojaloop party id type such as MSISDN")
    if not _ID_VALUE.match(id_value):
        raise BackendError(400, "3100", "idValue: 1-128 characters of [A-Za-z0-9_.@+:-]")
    if id_sub_value is not None and not _ID_VALUE.match(id_sub_value):
        raise BackendError(400, "3100", "idSubValue: 1-128 characters of [A-Za-z0-9_.@+:-]")


def _check_transfer_id(transfer_id: str) -> None:
    if not _TRANSFER_ID.match(transfer_id):
        raise BackendError(400, "3100", "transferId: must be a UUID or ULID")


@router.get("/parties/{idType}/{idValue}", responses=_PARTY_ERRORS)
async def get_party(idType: str, idValue: str, inbound: InboundDep) -> dict[str, Any]:  # noqa: N803 - spec names
    """The account holder behind a party id (`transferParty`); 404 3204 when unknown, 5400 when blocked."""
    _check_party_path(idType, idValue, None)
    return await inbound.party(idType, idValue, None)


@router.get("/parties/{idType}/{idValue}/{idSubValue}", responses=_PARTY_ERRORS)
async def get_party_with_sub_id(
    idType: str,
    idValue: str,
    idSubValue: str,
    inbound: InboundDep,  # noqa: N803
) -> dict[str, Any]:
    """As above, with a sub-id."""
    _check_party_path(idType, idValue, idSubValue)
    return await inbound.party(idType, idValue, idSubValue)


@router.post("/quoterequests", responses=_QUOTE_ERRORS)
async def post_quote_request(body: QuoteRequestBody, inbound: InboundDep) -> dict[str, Any]:
    """The payee-side quote (fee/commission policy), saved by quoteId; 5106 / 5200 / 5400 when refused."""
    return await inbound.quote(body)


@router.post("/transfers", responses=_TRANSFER_ERRORS)
async def post_transfer(body: TransferBody, inbound: InboundDep) -> dict[str, Any]:
    """Reserve the credit (idempotent by transferId): `{homeTransactionId, transferState: RESERVED}`."""
    return await inbound.transfer(body)


@router.put("/transfers/{transferId}", responses=_NOTIFICATION_ERRORS)
async def put_transfer(transferId: str, body: NotificationBody, inbound: InboundDep) -> JSONResponse:  # noqa: N803
    """The SDK's final notification: commit on COMMITTED, release on ABORTED, reconcile otherwise.
    Answered at once; a repeated notification changes nothing; one for a transfer we never had is 200 `{}` too
    (logged as a warning: nothing to commit or release)."""
    _check_transfer_id(transferId)
    await inbound.notify(transferId, body)
    return JSONResponse({}, status_code=200)


@router.get("/transfers/{transferId}", responses=_READ_ERRORS)
async def get_transfer(transferId: str, inbound: InboundDep) -> dict[str, Any]:  # noqa: N803
    """An inbound transfer's state (`transferDetailsResponse`), from our database."""
    _check_transfer_id(transferId)
    return await inbound.get(transferId)
