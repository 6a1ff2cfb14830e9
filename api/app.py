"""The two FastAPI apps: the client API (CBS-facing, 3004) and the backend API (SDK-facing, 3003).

Both are thin: they validate input and talk to Temporal and our database through services built once here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import Client

from activities.core_banking import CoreBankingClient
from api.accounts import AccountRegistrar
from api.auth import ApiKeyVerifier, Authenticator, CredentialVerifier
from api.backend import InboundService, install_backend_error_handlers
from api.backend import router as backend_router
from api.backend.errors import BackendError, ErrorResponse, error_response, error_responses
from api.backend.network import AllowedClients
from api.codec_server import TokenRequired, codec_router
from api.cors import PrefixCORS
from api.dependencies import HealthDep
from api.headers import _RULES as HEADER_RULES  # the one statement of each header's rule
from api.headers import PAYMENT_CHANNELS, PRODUCTS
from api.health import HealthCheck
from api.jwt_auth import Jwks, JwtValidator, JwtVerifier
from api.limits import RateLimiter, RequestLimits, client_limit_responses, document_limits, problem_render
from api.metrics import MetricsPage
from api.metrics import router as metrics_router
from api.openapi import publish_openapi
from api.problems import ProblemDetails, install_problem_handlers
from api.readiness import Readiness, ReadinessCheck
from api.send_money import router as send_money_router
from api.transfer_service import TransferService
from api.transfers import router as transfers_router
from api.webhook_service import WebhookService
from api.webhooks import document_event
from api.webhooks import router as webhooks_router
from mojaflow.api_keys import ApiKeyStore
from mojaflow.codec import EncryptionCodec, load_payload_ring
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.metrics_server import DatabaseGauges
from mojaflow.settings import Settings
from mojaflow.temporal import connect, describe_connection
from mojaflow.tracing import Tracing

__all__ = ["Resources", "create_backend_app", "create_client_app", "open_resources"]

log = logging.getLogger("mojaflow.api")


@dataclass(frozen=True)
class Resources:
    """What both APIs use: opened once per process when one process serves both."""

    database: Database
    client: Client
    tracing: Tracing | None = None  # None: tracing is off (mojaflow/tracing.py)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    database = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))
    await database.create_schema()
    tracing = Tracing.from_settings(settings, service_name="mojaflow-api")
    try:
        log.info("API connecting to %s", describe_connection(settings))
        # lazy: the API starts (and /health says why it is unhealthy) even while Temporal is still coming up;
        # a TLS or API-key configuration Temporal refuses raises TemporalConnectError here, at start
        interceptors = tracing.client_interceptors() if tracing is not None else []
        client = await connect(settings, lazy=True, interceptors=interceptors)
        yield Resources(database=database, client=client, tracing=tracing)
    finally:
        await database.close()
        if tracing is not None:
            tracing.shutdown()


@asynccontextmanager
async def _resources(settings: Settings, shared: Resources | None) -> AsyncIterator[Resources]:
    if shared is not None:
        yield shared
    else:
        async with open_resources(settings) as own:
            yield own


class HealthStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthStatus, "description": "Temporal answers and a worker polls the task queue"},
    503: {"model": HealthStatus, "description": "`unavailable`, and the `reason`"},
}


async def health(check: HealthDep) -> JSONResponse:
    problem = await check.problem()
    if problem:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


def _money_movement_header_docs() -> dict[str, dict[str, Any]]:
    """Required in the published document (validated by hand, so that a missing one is a 400, not FastAPI's 422)."""
    enums = {"product": PRODUCTS, "payment_channel": PAYMENT_CHANNELS}
    docs: dict[str, dict[str, Any]] = {}
    for name, (rule, pattern) in HEADER_RULES.items():
        schema = (
            {"type": "string", "enum": list(enums[name])}
            if name in enums
            else {"type": "string", "pattern": pattern.pattern}
        )
        docs[name] = {"required": True, "description": f"Money Movement header: {rule}", "schema": schema}
    return docs


def create_client_app(settings: Settings, resources: Resources | None = None) -> FastAPI:
    codec_guard = TokenRequired(settings.codec_cors_origins) if settings.codec_auth == "token" else None  # else local

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            opened = await stack.enter_async_context(_resources(settings, resources))
            store = ApiKeyStore(opened.database, load_secrets_ring(settings))
            api_keys = ApiKeyVerifier(store, settings.api_key_cache_s)
            jwks = None
            if settings.oauth_jwks_url is not None:
                jwks = Jwks(settings.oauth_jwks_url, cache_s=settings.oauth_jwks_cache_s)
                stack.push_async_callback(jwks.aclose)
            app.state.settings = settings
            app.state.transfers = TransferService(opened.client, opened.database, settings)
            app.state.accounts = AccountRegistrar(opened.client, settings)
            app.state.webhooks = WebhookService(opened.client, opened.database, settings)
            app.state.health = HealthCheck(opened.client, settings.temporal_namespace, settings.task_queue)
            app.state.readiness = ReadinessCheck(
                app.state.health, opened.database, sdk_url=settings.sdk_url, cbs_url=settings.cbs_url
            )
            stack.push_async_callback(app.state.readiness.aclose)
            app.state.metrics = MetricsPage(DatabaseGauges(opened.database))
            app.state.authenticator, app.state.send_money_authenticator = _authenticators(settings, api_keys, jwks)
            if codec_guard is not None:  # the codec endpoint's own credentials: operator API keys, the UI's tokens
                codec_guard.api_keys = api_keys
                if jwks is not None:
                    codec_guard.tokens = JwtValidator.from_settings(jwks, settings, settings.codec_oauth_audience)
            yield

    app = FastAPI(
        title="mojaflow client API",
        summary="Send Mojaloop transfers from a core banking system, durably.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    publish_openapi(app, [ProblemDetails], headers=_money_movement_header_docs())
    # Size limits inside CORS, so that a browser can read a 413 of the codec endpoint too
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes,
        render=problem_render,
    )  # fmt: skip
    # Browsers only ever need the codec endpoint (the Temporal Web UI's origin); never /transfers. With tokens the
    # UI sends credentials (TEMPORAL_CODEC_INCLUDE_CREDENTIALS): allowed for the exact origins listed only.
    app.add_middleware(PrefixCORS, prefix="/codec", **_codec_cors(settings))
    app.include_router(transfers_router)
    app.include_router(send_money_router)
    app.include_router(webhooks_router)
    app.include_router(metrics_router)
    document_event(app)
    codec = EncryptionCodec(load_payload_ring(settings))
    app.include_router(codec_router(codec, settings.codec_cors_origins, guard=codec_guard))
    for path, summary in (("/health", "Temporal and a worker are up"), ("/", "Health check (Send Money API spec)")):
        app.add_api_route(path, health, methods=["GET"], tags=["health"], summary=summary, responses=_HEALTH_RESPONSES)
    app.add_api_route(
        "/ready", ready, methods=["GET"], tags=["health"], summary="Temporal, a worker, our database, the SDK, the CBS",
        responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "`not_ready`: see `checks`"}},
    )  # fmt: skip
    document_limits(app, client_limit_responses())
    if resources is not None and resources.tracing is not None:
        resources.tracing.instrument_app(app)
    return app


async def ready(request: Request) -> JSONResponse:
    report: Readiness = await request.app.state.readiness.report()
    body = report.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(body, status_code=200 if report.status == "ready" else 503)


def _codec_cors(settings: Settings) -> dict[str, Any]:
    if settings.codec_auth == "token":
        headers = ["Authorization", "Authorization-Extras", "Content-Type", "X-Namespace", "X-API-Key"]
        return {"allow_origins": settings.codec_cors_origins, "allow_methods": ["POST"], "allow_headers": headers,
                "allow_credentials": True}  # fmt: skip
    return {"allow_origins": settings.codec_cors_origins, "allow_methods": ["POST"], "allow_headers": ["*"]}


def _authenticators(
    settings: Settings, api_keys: ApiKeyVerifier, jwks: Jwks | None
) -> tuple[Authenticator, Authenticator]:
    """Who may call the client API (api.auth), under MOJAFLOW_AUTH, and its Send Money routes, under
    MOJAFLOW_SEND_MONEY_AUTH: API keys and, when configured, OAuth2 bearer tokens; or nobody checked at all with
    `none`. POSTs count against the caller's rate limit (api.limits), one limit for both."""
    if settings.auth == "none":
        log.warning(
            "MOJAFLOW_AUTH=none: the client API authenticates nobody; the client_key header decides and every "
            "caller reads every transfer. For local experiments only."
        )
    if settings.send_money_auth == "none":
        log.warning(
            "MOJAFLOW_SEND_MONEY_AUTH=none: the Send Money routes authenticate nobody; anyone who reaches this "
            "port can send money from the bank's customers' accounts. Only behind network isolation."
        )
    verifiers: list[CredentialVerifier] = [api_keys]
    if jwks is not None:
        verifiers.append(JwtVerifier(JwtValidator.from_settings(jwks, settings), settings))
    limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute > 0 else None
    return (
        Authenticator(settings.auth, verifiers, rate_limit=limiter),
        Authenticator(settings.send_money_auth, verifiers, rate_limit=limiter),
    )


def create_backend_app(settings: Settings, resources: Resources | None = None) -> FastAPI:
    """The SDK's `BACKEND_ENDPOINT`: parties and quotes from the CBS, transfers as `InboundTransferWorkflow`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            _resources(settings, resources) as opened,
            httpx.AsyncClient(base_url=settings.cbs_url, timeout=settings.cbs_timeout_s) as cbs,
        ):
            if opened.tracing is not None:  # the party lookups' CBS calls
                opened.tracing.instrument_client(cbs)
            app.state.settings = settings
            app.state.inbound = InboundService(opened.client, opened.database, CoreBankingClient(cbs), settings)
            app.state.health = HealthCheck(opened.client, settings.temporal_namespace, settings.task_queue)
            yield

    app = FastAPI(
        title="mojaflow backend API (for Payment Manager)",
        summary="The SDK's backend: inbound parties, quotes and transfers, reserved then committed at the CBS.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_backend_error_handlers(app)
    publish_openapi(app, [ErrorResponse])
    app.include_router(backend_router)
    responses = {**_HEALTH_RESPONSES, 403: error_responses({})[403]}  # the allow-list answers before any route
    app.add_api_route("/", health, methods=["GET"], tags=["health"], summary="Health check (spec)", responses=responses)
    app.add_api_route("/health", health, methods=["GET"], tags=["health"], responses=responses)
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes,
        render=_backend_render,
    )  # fmt: skip
    documented = error_responses({413: ["3100"], 431: ["3100"]})
    document_limits(app, {413: documented[413], 431: documented[431]})
    # outermost: a client outside the allow-list reaches no route, not even the health check
    app.add_middleware(AllowedClients, allowed=settings.backend_allowed_clients)
    if resources is not None and resources.tracing is not None:
        resources.tracing.instrument_app(app)
    return app


def _backend_render(status: int, detail: str, headers: dict[str, str]) -> JSONResponse:
    """The backend API's answer to a request over the size limits: `{statusCode: "3100", message}`."""
    response = error_response(BackendError(status, "3100", detail))
    response.headers.update(headers)
    return response
