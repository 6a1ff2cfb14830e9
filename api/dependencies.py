"""Dependencies shared by the routes, declared once as `Annotated` aliases. The objects behind them are built
once in the app's lifespan (`api.app`) and kept on `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.health import HealthCheck
from api.transfer_service import TransferService

__all__ = ["HealthDep", "TransfersDep"]


def _transfers(request: Request) -> TransferService:
    return request.app.state.transfers


def _health(request: Request) -> HealthCheck:
    return request.app.state.health


TransfersDep = Annotated[TransferService, Depends(_transfers)]
HealthDep = Annotated[HealthCheck, Depends(_health)]
