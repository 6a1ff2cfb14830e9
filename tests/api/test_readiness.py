"""`GET /ready`: Temporal and a worker (as `/health`), our database, the SDK and the CBS, each with its latency; 503
naming what is missing, while `/health` keeps answering for the process itself. Real servers: the test stack's,
and a sibling API pointed at a CBS address where nothing listens."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.process import free_port
from tests.support.stack import Stack

CHECKS = {"temporal", "database", "sdk", "cbs"}


async def test_ready_when_every_system_a_transfer_needs_answers(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{stack.api_url}/ready")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["ok"] is True and "reason" not in check, name
        assert 0 <= check["latencyMs"] < 3000, name


async def test_not_ready_names_the_system_that_does_not_answer(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with stack.sibling(tmp_path, MOJAFLOW_CBS_URL=nobody) as sibling:
        response = await http.get(f"{sibling.api_url}/ready")
        health = await http.get(f"{sibling.api_url}/health")

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "not_ready"
    assert {name for name, check in body["checks"].items() if not check["ok"]} == {"cbs"}
    assert body["checks"]["cbs"]["reason"] == "ConnectError"
    assert nobody not in response.text  # reasons, never addresses
    assert health.status_code == 200  # the process itself is up: /health keeps its meaning
