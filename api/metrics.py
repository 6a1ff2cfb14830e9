"""`GET /metrics`: this API process's Prometheus metrics (mojaflow/metrics.py) and our database's gauges
(mojaflow/metrics_server.py `DatabaseGauges`), for an operator's credential only: an operator API key
(`mojaflow keys create --operator`) or a token with `MOJAFLOW_OAUTH_OPERATOR_SCOPE`, the same operators who read
every client's transfers. A client's key is 403 `operator_required`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from api.auth import AUTH_RESPONSES
from api.dependencies import CallerDep
from api.problems import Problem, problem_responses
from mojaflow.metrics_server import CONTENT_TYPE, DatabaseGauges

__all__ = ["MetricsPage", "router"]

log = logging.getLogger("mojaflow.security")

router = APIRouter(tags=["operations"])


class MetricsPage:
    """The page's parts: the process's registry, and this app's database gauges (a registry of their own, so that
    several apps in one process never register the same names twice)."""

    def __init__(self, gauges: DatabaseGauges) -> None:
        self._gauges = gauges
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(gauges)

    async def render(self) -> bytes:
        await self._gauges.refresh()
        return generate_latest(REGISTRY) + generate_latest(self._registry)


def _responses() -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Prometheus text format 0.0.4", "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}
    }
    responses.update(AUTH_RESPONSES)
    forbidden = problem_responses({403: ["client_key_mismatch", "operator_required"]})[403]
    return {**responses, 403: forbidden}


@router.get("/metrics", summary="Prometheus metrics (operator key)", response_class=Response, responses=_responses())
async def metrics(request: Request, caller: CallerDep) -> Response:
    if not caller.operator:
        log.warning("GET /metrics refused a client's credential (%s): not an operator", caller.actor)
        raise Problem(403, "operator_required", "Forbidden", "the metrics take an operator's API key or token")
    page: MetricsPage = request.app.state.metrics
    return Response(await page.render(), media_type=CONTENT_TYPE)
