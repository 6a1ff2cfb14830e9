"""Dependencies shared by the routes, declared once as `Annotated` aliases. The objects behind them are built
once in the app's lifespan (`api.app`) and kept on `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Authenticator, Caller
from api.health import HealthCheck
from api.transfer_service import TransferService

__all__ = ["CallerDep", "HealthDep", "TransfersDep"]


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


TransfersDep = Annotated[TransferService, Depends(_transfers)]
HealthDep = Annotated[HealthCheck, Depends(_health)]
CallerDep = Annotated[Caller, Depends(_caller)]  # who calls (401/403 problems otherwise): api.auth
