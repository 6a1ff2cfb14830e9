"""The two FastAPI apps: the client API (CBS-facing, 3004) and the backend API (SDK-facing, 3003).

Both are thin: they validate input and talk to Temporal and our database through services built once here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import Client

from activities.core_banking import CoreBankingClient
from api.auth import ApiKeyVerifier, Authenticator
from api.backend import InboundService, install_backend_error_handlers
from api.backend import router as backend_router
from api.backend.errors import ErrorResponse, error_responses
from api.backend.network import AllowedClients
from api.codec_server import codec_router
from api.cors import PrefixCORS
from api.dependencies import HealthDep
from api.headers import _RULES as HEADER_RULES  # the one statement of each header's rule
from api.headers import PAYMENT_CHANNELS, PRODUCTS
from api.health import HealthCheck
from api.openapi import publish_openapi
from api.problems import ProblemDetails, install_problem_handlers
from api.transfer_service import TransferService
from api.transfers import router as transfers_router
from mojaflow.api_keys import ApiKeyStore
from mojaflow.codec import EncryptionCodec, load_payload_ring
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.temporal import connect, describe_connection

__all__ = ["Resources", "create_backend_app", "create_client_app", "open_resources"]

log = logging.getLogger("mojaflow.api")


@dataclass(frozen=True)
class Resources:
    """What both APIs use: opened once per process when one process serves both."""

    database: Database
    client: Client


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    database = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))
    await database.create_schema()
    try:
        log.info("API connecting to %s", describe_connection(settings))
        # lazy: the API starts (and /health says why it is unhealthy) even while Temporal is still coming up;
        # a TLS or API-key configuration Temporal refuses raises TemporalConnectError here, at start
        client = await connect(settings, lazy=True)
        yield Resources(database=database, client=client)
    finally:
        await database.close()


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
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _resources(settings, resources) as opened:
            app.state.settings = settings
            app.state.transfers = TransferService(opened.client, opened.database, settings)
            app.state.health = HealthCheck(opened.client, settings.temporal_namespace, settings.task_queue)
            app.state.authenticator = _authenticator(settings, opened.database)
            yield

    app = FastAPI(
        title="mojaflow client API",
        summary="Send Mojaloop transfers from a core banking system, durably.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    publish_openapi(app, [ProblemDetails], headers=_money_movement_header_docs())
    # Browsers only ever need the codec endpoint (the Temporal Web UI's origin); never /transfers.
    app.add_middleware(
        PrefixCORS, prefix="/codec", allow_origins=settings.codec_cors_origins, allow_methods=["POST"],
        allow_headers=["*"],
    )  # fmt: skip
    app.include_router(transfers_router)
    app.include_router(codec_router(EncryptionCodec(load_payload_ring(settings)), settings.codec_cors_origins))
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        tags=["health"],
        summary="Temporal and a worker are up",
        responses=_HEALTH_RESPONSES,
    )
    return app


def _authenticator(settings: Settings, database: Database) -> Authenticator:
    """Who may call the client API (api.auth): API keys, or nobody checked at all with MOJAFLOW_AUTH=none."""
    if settings.auth == "none":
        log.warning(
            "MOJAFLOW_AUTH=none: the client API authenticates nobody; the client_key header decides and every "
            "caller reads every transfer. For local experiments only."
        )
    store = ApiKeyStore(database, load_secrets_ring(settings))
    return Authenticator(settings.auth, [ApiKeyVerifier(store, settings.api_key_cache_s)])


def create_backend_app(settings: Settings, resources: Resources | None = None) -> FastAPI:
    """The SDK's `BACKEND_ENDPOINT`: parties and quotes from the CBS, transfers as `InboundTransferWorkflow`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            _resources(settings, resources) as opened,
            httpx.AsyncClient(base_url=settings.cbs_url, timeout=settings.cbs_timeout_s) as cbs,
        ):
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
    # outermost: a client outside the allow-list reaches no route, not even the health check
    app.add_middleware(AllowedClients, allowed=settings.backend_allowed_clients)
    return app
