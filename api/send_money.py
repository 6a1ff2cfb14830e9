"""The pm4ml Send Money API on the client API's port (`specs/pm4ml-core-connector-send-money-api.yaml`), so that a
bank's systems written for a Payment Manager core connector work unchanged: a thin mapping onto the transfer
service that `/transfers` uses, the same `OutboundTransferWorkflow` underneath.

Its dialect: errors are `{statusCode, message}` (an FSPIOP code; our code first in the message); any bad body is
400 (3100, 3101 for malformed JSON); the Money Movement headers are optional (validated when present, then used as
on `/transfers`); without them `homeTransactionId` is the idempotency key (`api.idempotency`). The party is
accepted automatically; the quote is always the caller's to accept (`PUT`). Who may call: MOJAFLOW_SEND_MONEY_AUTH.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from activities.sdk_accounts import AccountEntry
from api.auth import Caller
from api.commands import Acceptance, DecideTransfer, Requester, StartTransfer
from api.dependencies import SendMoneyCallerDep, TransfersDep
from api.errors import InvalidState
from api.headers import MoneyMovementHeaders, OptionalMoneyMovementHeadersDep
from api.idempotency import decision_key, request_hash, send_money_key
from api.openapi import OPTIONAL_HEADERS
from api.prefer import parse_prefer
from api.send_money_dialect import SendMoneyFailure, SendMoneyRoute, as_failures, documented, ended
from api.send_money_models import (
    AccountsFailed,
    AccountsRegistered,
    AccountsRequestItem,
    ConfirmSendMoney,
    ConfirmSendMoneyResponse,
    MerchantPaymentRequest,
    SendMoneyRequest,
    SendMoneyResponse,
    TransferProgress,
)
from api.transfer_service import TransferService
from mojaflow.models import FINAL_STATES, TransferState
from mojaflow.settings import Settings

__all__ = ["router"]

router = APIRouter(tags=["send money"], route_class=SendMoneyRoute)

_OPTIONAL_HEADERS = {OPTIONAL_HEADERS: "optional"}  # api.openapi documents them as not required
_BEFORE_THE_QUOTE = {TransferState.RECEIVED, TransferState.RESOLVING_PARTY, TransferState.REQUESTING_QUOTE,
                     TransferState.WAITING_FOR_PARTY_ACCEPTANCE}  # fmt: skip


@router.post(
    "/send-money",
    response_model=SendMoneyResponse,
    openapi_extra=_OPTIONAL_HEADERS,
    responses=documented(400, 401, 403, 429, 500, 503, 504),
)
async def send_money(
    body: SendMoneyRequest, caller: SendMoneyCallerDep, headers: OptionalMoneyMovementHeadersDep,
    transfers: TransfersDep, request: Request,
) -> JSONResponse:  # fmt: skip
    """P2P: the payer sends `sendAmount`. 200 with the quote once it is there (accept it with `PUT`); 500 when the
    lookup or the quote failed; 504 when not there in MOJAFLOW_DEFAULT_WAIT_S (the transfer goes on: `GET`)."""
    return await _start(request, caller, headers, "/send-money", body, transfers)


@router.post(
    "/merchant-payment",
    response_model=SendMoneyResponse,
    openapi_extra=_OPTIONAL_HEADERS,
    responses=documented(400, 401, 403, 429, 500, 503, 504),
)
async def merchant_payment(
    body: MerchantPaymentRequest, caller: SendMoneyCallerDep, headers: OptionalMoneyMovementHeadersDep,
    transfers: TransfersDep, request: Request,
) -> JSONResponse:  # fmt: skip
    """P2B: the merchant receives `receiveAmount`; answers as `POST /send-money`."""
    return await _start(request, caller, headers, "/merchant-payment", body, transfers)


_CONFIRMED: dict[int | str, dict[str, Any]] = {
    200: {"model": ConfirmSendMoneyResponse, "description": "Confirmed: the transfer is COMPLETED"},
    202: {"model": TransferProgress, "description": "Not final yet (never a 500: do not pay again): `GET` it"},
}


@router.put(
    "/send-money/{transferId}",
    openapi_extra=_OPTIONAL_HEADERS,
    responses={**_CONFIRMED, **documented(400, 401, 403, 404, 409, 500, 503)},
)
async def confirm_send_money(
    transferId: str, body: ConfirmSendMoney, caller: SendMoneyCallerDep,  # noqa: N803 - the spec's name
    headers: OptionalMoneyMovementHeadersDep, transfers: TransfersDep, request: Request,
) -> JSONResponse:  # fmt: skip
    """`acceptQuote: true`: hold, money step, commit; `false`: ABORTED, nothing moved. 200 only once COMPLETED
    (again on a repeated PUT); 500 for a transfer that ended otherwise; 202 while it goes on."""
    return await _confirm(request, caller, headers, transferId, body, transfers)


@router.put(
    "/merchant-payment/{transferId}",
    openapi_extra=_OPTIONAL_HEADERS,
    responses={**_CONFIRMED, **documented(400, 401, 403, 404, 409, 500, 503)},
)
async def confirm_merchant_payment(
    transferId: str, body: ConfirmSendMoney, caller: SendMoneyCallerDep,  # noqa: N803 - the spec's name
    headers: OptionalMoneyMovementHeadersDep, transfers: TransfersDep, request: Request,
) -> JSONResponse:  # fmt: skip
    """As `PUT /send-money/{transferId}`."""
    return await _confirm(request, caller, headers, transferId, body, transfers)


@router.post(
    "/accounts",
    response_model=AccountsRegistered,
    responses={
        **documented(400, 401, 403, 429, 503),
        500: {"model": AccountsFailed, "description": "The SDK's `errorAccountsResponse` (the ALS's FSPIOP code)"},
        504: {"model": AccountsFailed, "description": "The SDK's `errorAccountsResponse` (504), or ours (2004)"},
    },
)
async def register_accounts(body: list[AccountsRequestItem], _caller: SendMoneyCallerDep, request: Request) -> Response:
    """Register identifiers with the scheme's ALS through the SDK's `POST /accounts`; its answer as it came."""
    entries = [AccountEntry.model_validate(item.model_dump(by_alias=True, exclude_none=True)) for item in body]
    with as_failures():
        answer = await request.app.state.accounts.register(entries)
    if answer.status == 400 or answer.body is None:
        status, code, reason = {
            400: (400, "3100", "sdk_refused: Payment Manager refused the identifiers"),
            503: (503, "2003", "sdk_unavailable: Payment Manager could not be reached; nothing was registered"),
        }.get(answer.status, (504, "2004", "timeout: no answer in time; registering the same ids again is harmless"))
        raise SendMoneyFailure(status, code, reason)
    return JSONResponse(answer.body, status_code=answer.status)


@router.delete("/accounts/{Type}/{ID}", responses=documented(401, 403, 501))
async def delete_account(Type: str, ID: str, _caller: SendMoneyCallerDep) -> Response:  # noqa: N803
    """Not implemented: SDK 18.0.2 has no route to remove an identifier from the ALS."""
    raise SendMoneyFailure(
        501, "2002", "not_implemented: Payment Manager (SDK 18.0.2) cannot remove an identifier from the ALS"
    )


# -- the mapping -------------------------------------------------------------------------------------------------


def _requester(settings: Settings, caller: Caller, headers: MoneyMovementHeaders | None) -> Requester:
    """The headers' client when sent (checked against the credential, api.auth); else the credential's; else, with
    MOJAFLOW_SEND_MONEY_AUTH=none, the bank itself (MOJAFLOW_DEFAULT_CLIENT_KEY)."""
    if headers is not None:
        return Requester(headers.client_key, caller.actor, headers.product, headers.payment_channel)
    return Requester(caller.client_key or settings.default_client_key, caller.actor)


async def _start(
    request: Request, caller: Caller, headers: MoneyMovementHeaders | None, route: str,
    body: SendMoneyRequest | MerchantPaymentRequest, transfers: TransferService,
) -> JSONResponse:  # fmt: skip
    """Start (or find) the transfer of this request; answer its quote (200), or why there is none (500, 504)."""
    if body.fx:
        raise SendMoneyFailure(400, "3100", "fx_not_supported: the send and receive currencies differ")
    settings: Settings = request.app.state.settings
    requester = _requester(settings, caller, headers)
    header_key = headers.idempotent_request_key if headers is not None else None
    key = send_money_key(requester.client_key, route, header_key, body.home_transaction_id)
    home_transaction_id = body.home_transaction_id or header_key
    if key is None or home_transaction_id is None:
        raise SendMoneyFailure(
            400, "3100", "homeTransactionId: required without the Money Movement headers (no retry could be safe)"
        )
    order = body.order(settings.send_money_payer_id_type, home_transaction_id)
    fingerprint = request_hash({"route": route, **body.model_dump(mode="json", by_alias=True, exclude_none=True)})
    acceptance = Acceptance(party=True, quote=False, binding=True)  # the quote is always the caller's here
    wait_s = _wait_s(request, settings)
    with as_failures():
        outcome = await transfers.create(StartTransfer(requester, order, key, fingerprint, acceptance), wait_s)
        view = outcome.view
        if outcome.replayed and not outcome.settled:  # the first request's answer was lost: wait as it did
            view = await transfers.wait(view.transfer_id, wait_s)
    if view.current_state in FINAL_STATES and view.current_state != TransferState.COMPLETED:
        raise ended(view)
    if view.quote is None:
        raise SendMoneyFailure(
            504, "2004", f"timeout: no quote within {wait_s:g} s; the transfer goes on: "
            f"GET /transfers/{view.transfer_id}", transfer_id=view.transfer_id,
        )  # fmt: skip
    answer = SendMoneyResponse.of(view, body.payee_id_type, body.payee_id)
    return JSONResponse(answer.model_dump(mode="json", by_alias=True, exclude_none=True))


def _wait_s(request: Request, settings: Settings) -> float:
    """MOJAFLOW_DEFAULT_WAIT_S, or RFC 7240 `Prefer: wait=N` as on `/transfers` (pm4ml clients send none)."""
    return parse_prefer(request.headers.get("prefer"), settings.default_wait_s).wait_s


async def _confirm(
    request: Request, caller: Caller, headers: MoneyMovementHeaders | None, transfer_id: str,
    body: ConfirmSendMoney, transfers: TransferService,
) -> JSONResponse:  # fmt: skip
    settings: Settings = request.app.state.settings
    header_key = headers.idempotent_request_key if headers is not None else None
    command = DecideTransfer(
        requester=_requester(settings, caller, headers),
        transfer_id=transfer_id,
        idempotency_key=decision_key(header_key, body.accept_quote),
        accept_quote=body.accept_quote,
        home_transaction_id=body.home_transaction_id,
    )
    wait_s = _wait_s(request, settings)
    try:
        with as_failures():
            outcome = await transfers.decide(command, wait_s)
            view = outcome.view
            if outcome.replayed and view.current_state not in FINAL_STATES:  # as long as a first request waits
                view = await transfers.wait(view.transfer_id, wait_s)
    except InvalidState as refused:  # no quote awaits a decision: the transfer's state answers
        view = refused.view
        if view.current_state in _BEFORE_THE_QUOTE:
            detail = f"invalid_state: {refused.detail}"
            raise SendMoneyFailure(409, "3100", detail, transfer_id=view.transfer_id) from None
    if view.current_state == TransferState.COMPLETED:
        return JSONResponse(ConfirmSendMoneyResponse(transfer_id=view.transfer_id).model_dump(by_alias=True))
    if view.current_state in FINAL_STATES:
        raise ended(view)
    progress = TransferProgress(transfer_id=view.transfer_id, current_state=view.current_state.value)
    return JSONResponse(progress.model_dump(by_alias=True), status_code=202)
