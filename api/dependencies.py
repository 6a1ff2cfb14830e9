"""Dependencies shared by the routes, declared once as `Annotated` aliases. The objects behind them are built
once in the app's lifespan (`api.app`) and kept on `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Authenticator, Caller
from api.health import HealthCheck
from api.transfer_service import TransferService

__all__ = ["CallerDep", "HealthDep", "ReaderDep", "SendMoneyCallerDep", "TransfersDep"]


def _transfers(request: Request) -> TransferService:
    return request.app.state.transfers


def _health(request: Request) -> HealthCheck:
    return request.app.state.health


# Declared as security schemes, so the published document says how to authenticate; read by `Authenticator`.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`mojaflow keys create`), or an OAuth2 access token (JWT) where MOJAFLOW_OAUTH_* are set",
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, in a header of its own")


async def _caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.caller(request, bearer.credentials if bearer else None, api_key)


async def _send_money_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    """Who calls a Send Money route: as on `/transfers`, under MOJAFLOW_SEND_MONEY_AUTH instead of MOJAFLOW_AUTH."""
    authenticator: Authenticator = request.app.state.send_money_authenticator
    return await authenticator.caller(request, bearer.credentials if bearer else None, api_key)


async def _reader(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    """Who reads `GET /transfers/{id}`, which both doors' clients call: as `CallerDep`; but where the Send Money
    routes take no credential (MOJAFLOW_SEND_MONEY_AUTH=none), a caller without one reads what those routes
    start: the bank's own (MOJAFLOW_DEFAULT_CLIENT_KEY) outbound transfers, nothing else."""
    settings = request.app.state.settings
    if bearer is None and api_key is None and settings.send_money_auth == "none" and settings.auth != "none":
        return Caller(client_key=settings.default_client_key, actor="anonymous", outbound_only=True)
    return await _caller(request, bearer, api_key)


TransfersDep = Annotated[TransferService, Depends(_transfers)]
HealthDep = Annotated[HealthCheck, Depends(_health)]
CallerDep = Annotated[Caller, Depends(_caller)]  # who calls (401/403 problems otherwise): api.auth
SendMoneyCallerDep = Annotated[Caller, Depends(_send_money_caller)]
ReaderDep = Annotated[Caller, Depends(_reader)]
