"""`GET /ready`: what `/health` checks (Temporal answers, a worker polls our task queue) and every other system a
transfer needs: our database, the SDK's outbound API and the core banking system, each with its latency. A load
balancer or an orchestrator sends traffic on `/ready`; `/health` keeps its meaning (is this process's own setup up).

Answers are short reasons (an HTTP status, an exception's class, "timeout"), never a URL, a body or a secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx
from pydantic import Field
from sqlalchemy import text

from api.health import HealthCheck
from mojaflow.database import Database
from mojaflow.models import CamelModel

__all__ = ["DependencyStatus", "Readiness", "ReadinessCheck"]

CHECK_TIMEOUT_S = 3.0  # per dependency: a probe waits no longer than a load balancer would


class DependencyStatus(CamelModel):
    ok: bool
    latency_ms: float = Field(description="How long the check took")
    reason: str | None = Field(default=None, description="Why it is not ok")


class Readiness(CamelModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, DependencyStatus] = Field(description="temporal, database, sdk, cbs")


class ReadinessCheck:
    def __init__(self, health: HealthCheck, database: Database, *, sdk_url: str, cbs_url: str) -> None:
        self._health = health
        self._database = database
        self._sdk_health = f"{sdk_url.rstrip('/')}/"  # the SDK outbound API's health route
        self._cbs_health = f"{cbs_url.rstrip('/')}/health"  # the CBS contract's (cbs-contract.openapi.yaml)
        self._http = httpx.AsyncClient(timeout=CHECK_TIMEOUT_S)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def report(self) -> Readiness:
        probes: dict[str, Callable[[], Awaitable[str | None]]] = {
            "temporal": self._health.problem,
            "database": self._database_problem,
            "sdk": lambda: self._http_problem(self._sdk_health),
            "cbs": lambda: self._http_problem(self._cbs_health),
        }
        statuses = await asyncio.gather(*(_timed(probe) for probe in probes.values()))
        checks = dict(zip(probes, statuses, strict=True))
        ready = all(status.ok for status in checks.values())
        return Readiness(status="ready" if ready else "not_ready", checks=checks)

    async def _database_problem(self) -> str | None:
        async with self._database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None

    async def _http_problem(self, url: str) -> str | None:
        response = await self._http.get(url)
        return None if response.status_code == 200 else f"HTTP {response.status_code}"


async def _timed(probe: Callable[[], Awaitable[str | None]]) -> DependencyStatus:
    started = time.perf_counter()
    try:
        reason = await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except TimeoutError:
        reason = "timeout"
    except httpx.TimeoutException:
        reason = "timeout"
    except Exception as error:  # refused, unreachable, a database that is down: its class says which
        reason = type(error).__name__
    latency = round((time.perf_counter() - started) * 1000, 1)
    return DependencyStatus(ok=reason is None, latency_ms=latency, reason=reason)
