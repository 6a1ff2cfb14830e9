"""`/webhooks` on the client API: subscriptions (CRUD, signing-secret rotation, recovery) and deliveries (listing,
one with its attempts, a manual retry); and the event itself, documented as an OpenAPI webhook.

Authenticated and scoped like `/transfers` (`api.webhook_service` says how); secrets are write-only.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field

from api.auth import AUTH_RESPONSES
from api.dependencies import CallerDep
from api.problems import Problem, problem_responses
from api.webhook_service import WebhookService
from mojaflow.models import CamelModel
from mojaflow.webhook_delivery_queries import DeliveryDetail, DeliveryView
from mojaflow.webhook_models import EVENT_TYPE, DeliveryStatus, WebhookEvent
from mojaflow.webhook_subscription_models import (
    SigningSecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
    SubscriptionView,
)

__all__ = ["EVENT_EXAMPLE", "document_event", "router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
_SUBSCRIPTION = "/subscriptions/{subscription_id}"
_DELIVERY = "/deliveries/{delivery_id}"
_NO_STORE = {"Cache-Control": "no-store"}  # answers holding a signing secret are never cached


def _service(request: Request) -> WebhookService:
    return request.app.state.webhooks


WebhooksDep = Annotated[WebhookService, Depends(_service)]


def _responses(codes: dict[int, list[str]]) -> dict[int | str, dict[str, Any]]:
    return {**problem_responses(codes), **AUTH_RESPONSES}


_NOT_FOUND = {404: ["subscription_not_found"]}
_INVALID_BODY = {400: ["malformed_json"], 422: ["validation_error", "unsafe_url"]}


class SubscriptionPage(CamelModel):
    items: list[SubscriptionView]
    next_cursor: str | None = None


class DeliveryPage(CamelModel):
    items: list[DeliveryView]
    next_cursor: str | None = None


class RecoverRequest(CamelModel):
    since: AwareDatetime = Field(description="Re-send the failed deliveries of events since then (with an offset)")


class RecoverResult(CamelModel):
    restarted: int = Field(description="How many failed deliveries start a new cycle")
    delivery_ids: list[str]


def _encode_cursor(created_at: datetime, identifier: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{identifier}".encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        created_at, identifier = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), identifier
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "invalid_cursor", "Invalid cursor", "cursor is not one this API returned") from None


Limit = Annotated[int, Query(ge=1, le=200)]

# -- subscriptions ---------------------------------------------------------------------------------------------


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses={
        201: {"description": "Created; `signingSecret` is shown this once", "headers": {
            "Location": {"description": "`/webhooks/subscriptions/{subscriptionId}`", "schema": {"type": "string"}}}},
        **_responses({**_INVALID_BODY, 400: ["malformed_json", "invalid_header"]}),
    },
)  # fmt: skip
async def create_subscription(caller: CallerDep, body: SubscriptionCreate, webhooks: WebhooksDep) -> JSONResponse:
    """Subscribe a URL to this client's payment status events, with one auth scheme. Secrets are write-only."""
    created = await webhooks.create(caller, body)
    headers = {"Location": f"/webhooks/subscriptions/{created.subscription_id}", **_NO_STORE}
    return JSONResponse(created.model_dump(mode="json", by_alias=True), status_code=201, headers=headers)


@router.get(
    "/subscriptions",
    response_model=SubscriptionPage,
    response_model_exclude_none=True,
    responses=_responses({400: ["invalid_cursor"], 422: ["validation_error"]}),
)
async def list_subscriptions(
    caller: CallerDep, webhooks: WebhooksDep, limit: Limit = 50, cursor: str | None = None
) -> SubscriptionPage:
    """Newest first: the caller's subscriptions (an operator's: everyone's), paginated as `/transfers`."""
    rows = await webhooks.subscriptions(caller, limit=limit + 1, after=_decode_cursor(cursor))
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0].subscription_id) if len(rows) > limit else None
    return SubscriptionPage(items=[view for view, _ in page], next_cursor=next_cursor)


@router.get(_SUBSCRIPTION, response_model=SubscriptionView, responses=_responses(_NOT_FOUND))
async def get_subscription(caller: CallerDep, subscription_id: str, webhooks: WebhooksDep) -> SubscriptionView:
    """One subscription, secrets masked. Another client's is 404, as an unknown one."""
    return await webhooks.get(caller, subscription_id)


@router.patch(_SUBSCRIPTION, response_model=SubscriptionView, responses=_responses({**_NOT_FOUND, **_INVALID_BODY}))
async def update_subscription(
    caller: CallerDep, subscription_id: str, body: SubscriptionUpdate, webhooks: WebhooksDep
) -> SubscriptionView:
    """Change the fields sent (`states: null` removes the filter; a new `auth` is given whole). Disabling cancels
    the pending deliveries."""
    return await webhooks.update(caller, subscription_id, body)


@router.delete(
    _SUBSCRIPTION,
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Deleted; its pending deliveries cancelled"}, **_responses(_NOT_FOUND)},
)
async def delete_subscription(caller: CallerDep, subscription_id: str, webhooks: WebhooksDep) -> Response:
    """Delete the subscription; its pending deliveries are cancelled, its delivery records kept."""
    await webhooks.delete(caller, subscription_id)
    return Response(status_code=204)


@router.post(
    f"{_SUBSCRIPTION}/rotate-secret",
    response_model=SigningSecretRotated,
    responses={200: {"description": "The new signing secret, shown this once"}, **_responses(_NOT_FOUND)},
)
async def rotate_signing_secret(caller: CallerDep, subscription_id: str, webhooks: WebhooksDep) -> JSONResponse:
    """A new Standard Webhooks signing secret; for 24 h deliveries carry a signature with the previous one too."""
    rotated = await webhooks.rotate_secret(caller, subscription_id)
    return JSONResponse(rotated.model_dump(mode="json", by_alias=True), headers=_NO_STORE)


@router.post(
    f"{_SUBSCRIPTION}/recover",
    status_code=202,
    response_model=RecoverResult,
    responses=_responses(
        {**_NOT_FOUND, 400: ["malformed_json"], 409: ["subscription_inactive"], 422: ["validation_error"]}
    ),
)
async def recover(
    caller: CallerDep, subscription_id: str, body: RecoverRequest, webhooks: WebhooksDep
) -> RecoverResult:
    """Re-send every FAILED delivery of events since `since`: each starts a new cycle, with the same event id."""
    ids = await webhooks.recover(caller, subscription_id, body.since)
    return RecoverResult(restarted=len(ids), delivery_ids=ids)


# -- deliveries ------------------------------------------------------------------------------------------------


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    response_model_exclude_none=True,
    responses=_responses({400: ["invalid_cursor"], 422: ["validation_error"]}),
)
async def list_deliveries(
    caller: CallerDep,
    webhooks: WebhooksDep,
    subscription_id: Annotated[str | None, Query(alias="subscriptionId", max_length=64)] = None,
    event_id: Annotated[str | None, Query(alias="eventId", max_length=20)] = None,
    transfer_id: Annotated[str | None, Query(alias="transferId", max_length=64)] = None,
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """Newest first: the deliveries of the caller's events (an operator's: everyone's), filtered and paginated."""
    rows = await webhooks.deliveries(
        caller, subscription_id=subscription_id, event_id=event_id, transfer_id=transfer_id, status=status,
        limit=limit + 1, after=_decode_cursor(cursor),
    )  # fmt: skip
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1][1], page[-1][0].delivery_id) if len(rows) > limit else None
    return DeliveryPage(items=[view for view, _ in page], next_cursor=next_cursor)


@router.get(
    _DELIVERY,
    response_model=DeliveryDetail,
    response_model_exclude_none=True,
    responses=_responses({404: ["delivery_not_found"]}),
)
async def get_delivery(caller: CallerDep, delivery_id: str, webhooks: WebhooksDep) -> DeliveryDetail:
    """One delivery with its event and every attempt (time, status code, latency, error class)."""
    return await webhooks.delivery(caller, delivery_id)


@router.post(
    f"{_DELIVERY}/retry",
    status_code=202,
    response_model=DeliveryView,
    response_model_exclude_none=True,
    responses=_responses(
        {
            404: ["delivery_not_found"],
            409: ["delivery_not_retryable", "subscription_inactive"],
            503: ["temporal_unavailable"],
        }
    ),
)
async def retry_delivery(caller: CallerDep, delivery_id: str, webhooks: WebhooksDep) -> DeliveryView:
    """Deliver again now: a running delivery attempts at once (a manual attempt, not counted toward the 73); a
    finished one (FAILED, DELIVERED, CANCELLED) starts a new cycle of 73 attempts with the same event id."""
    return await webhooks.retry(caller, delivery_id)


# -- the event, as an OpenAPI webhook --------------------------------------------------------------------------

EVENT_EXAMPLE: dict[str, Any] = {
    "id": "4fQ2mX9kLr7TbN1cVw3Z",
    "event_type": EVENT_TYPE,
    "data": {
        "transferId": "3f1c0f6e-9d2a-4c1b-8f7e-2b6d5a4c3e21",
        "homeTransactionId": "cbs-000123",
        "direction": "OUTBOUND",
        "previousState": "TRANSFERRING",
        "currentState": "COMPLETED",
        "sequence": 7,
        "amount": "150.25",
        "currency": "USD",
        "occurredAt": "2026-11-25T10:00:03.123Z",
    },
}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}


_EVENT_HEADERS = [
    _header("client_key", "The subscriber's client_key (Money Movement header)"),
    _header("product", "The payment's product; inbound payments: MOJAFLOW_INBOUND_PRODUCT"),
    _header("payment_channel", "The payment's channel; inbound payments: MOJAFLOW_INBOUND_PAYMENT_CHANNEL"),
    _header("idempotent_request_key", "The event id: the same on every re-post"),
    _header("timestamp", "When this attempt was made (ISO 8601 with offset)"),
    _header("webhook-id", "Standard Webhooks: the event id"),
    _header("webhook-timestamp", "Standard Webhooks: this attempt's Unix time"),
    _header("webhook-signature", "Standard Webhooks: `v1,<base64 HMAC-SHA256>`, one per active signing secret"),
]


def document_event(app: FastAPI) -> None:
    """Publish the event in the app's OpenAPI `webhooks`, with its headers and an example."""

    @app.webhooks.post(
        EVENT_TYPE,
        tags=["webhooks"],
        summary="A payment's status changed",
        operation_id="paymentStatusUpdated",
        openapi_extra={"parameters": _EVENT_HEADERS},
        responses={
            200: {"description": "Received. The only success: anything else is re-posted"},
            "default": {
                "description": "Anything else (another 2xx, 3xx, 4xx, 5xx, a timeout, no connection): the same event "
                "(same id) is posted again every hour from the first attempt, 73 attempts over 72 h at most, plus "
                "the subscriber's auth (its API-key headers, `Authorization: Basic`, or `Authorization: Bearer`)"
            },
        },
    )
    def payment_status_updated(
        event: Annotated[WebhookEvent, Body(openapi_examples={"completed": {"value": EVENT_EXAMPLE}})],
    ) -> None:
        """POSTed to each subscribed URL on every status change of a transfer of the subscriber (in-progress
        states too): Money Movement Services Webhooks 1.0. A receiver orders a transfer's events by
        `data.sequence` and dedupes on `id`."""
