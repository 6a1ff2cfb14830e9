"""The real stack as a user runs it, on 127.0.0.1: the SDK and CBS simulators, our API and our worker, each a
process of its own, against a Temporal server started by tests/support/temporal_env.py. The session fixture
`stack` (tests/conftest.py) and the history recorder (tests/histories/record.py) both start it from here.

Settings are shortened where a test would otherwise wait for minutes (acceptance timeout, the prepare's
expiry, the reconciliation grace, the questions asked in one run before continue-as-new, the sweeper's grace);
everything else is the default. Each stack has a sweeper Schedule of its own.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.support.auth import register_client_api
from tests.support.process import ServerProcess, free_port

__all__ = ["ROOT", "SHORTENED_SETTINGS", "Stack", "running_stack"]

ROOT = Path(__file__).resolve().parents[2]

SHORTENED_SETTINGS = {
    "MOJAFLOW_DEFAULT_WAIT_S": "15",
    "MOJAFLOW_ACCEPTANCE_TIMEOUT_S": "6",
    "MOJAFLOW_MAX_FEE": "5",
    "MOJAFLOW_TRANSFER_EXPIRY_S": "2",
    "MOJAFLOW_RECONCILE_GRACE_S": "1",
    "MOJAFLOW_RECONCILE_MAX_INTERVAL_S": "1",
    "MOJAFLOW_RECONCILE_CHECKS_PER_RUN": "3",
    "MOJAFLOW_QUOTE_EXPIRY_S": "60",
    "MOJAFLOW_SWEEPER_GRACE_S": "2",
}


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

    def __post_init__(self) -> None:  # the tests' requests to its client API carry its keys (tests/support/auth.py)
        register_client_api(self.api_url, self.env)

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

    def api_process(self) -> ServerProcess:
        """A fresh API process of this stack, up once it serves (its /health also needs a worker)."""
        return ServerProcess(
            "api",
            [sys.executable, "-m", "api"],
            health_url=f"{self.api_url}/openapi.json",
            env=self.env,
            cwd=str(ROOT),
            log_path=self.data_dir / "api.log",
        )

    @contextmanager
    def sibling(self, log_dir: Path, **env: str) -> Iterator[Stack]:
        """A second API and worker on the same Temporal server, simulators, database and keys (as replicas of one
        installation), with ports and a task queue of their own, `env` on top (e.g. another
        MOJAFLOW_TEMPORAL_ADDRESS) and their logs in `log_dir` (the sibling's `data_dir`); both stopped on exit."""
        client_port, backend_port = free_port(), free_port()
        own = {
            "MOJAFLOW_TASK_QUEUE": f"tests-{uuid.uuid4()}",
            "MOJAFLOW_CLIENT_API_PORT": str(client_port),
            "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
        }
        sibling = replace(
            self,
            env={**self.env, **own, **env},
            data_dir=log_dir,
            api_url=f"http://127.0.0.1:{client_port}",
            backend_url=f"http://127.0.0.1:{backend_port}",
            extra={},
        )
        api = sibling.api = sibling.api_process().start()
        worker: ServerProcess | None = None
        try:
            worker = sibling.worker = sibling.worker_process().start()
            yield sibling
        finally:
            for process in (worker, api):
                if process is not None:
                    process.stop()


def _simulator(name: str, module: str, data_dir: Path, *extra: str) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(data_dir / name), *extra]
    return ServerProcess(
        name, argv, health_url=f"http://127.0.0.1:{port}/health", cwd=str(ROOT), log_path=data_dir / f"{name}.log"
    )


@contextmanager
def running_stack(
    temporal: WorkflowEnvironment, payload_key: bytes, data_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """Start the simulators, the API and the worker (`env`: settings of theirs on top of these); stop exactly those
    processes on exit."""
    sdk = _simulator("sdk-simulator", "simulators.sdk", data_dir, "--party-timeout-s", "1", "--expiry-s", "2").start()
    cbs = _simulator("cbs-simulator", "simulators.cbs", data_dir).start()
    api: ServerProcess | None = None
    stack: Stack | None = None
    try:
        sdk_url, cbs_url = sdk.health_url.removesuffix("/health"), cbs.health_url.removesuffix("/health")
        client_port, backend_port = free_port(), free_port()
        settings = {
            "MOJAFLOW_DATA_DIR": str(data_dir),
            "MOJAFLOW_TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
            "MOJAFLOW_TASK_QUEUE": f"tests-{uuid.uuid4()}",
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(payload_key).decode(),
            "MOJAFLOW_SDK_URL": sdk_url,
            "MOJAFLOW_CBS_URL": cbs_url,
            "MOJAFLOW_CLIENT_API_PORT": str(client_port),
            "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
            "MOJAFLOW_CURRENCIES": "USD,EUR",  # EUR: served, yet held by no account (the CBS refuses it)
            "MOJAFLOW_SWEEPER_SCHEDULE_ID": f"tests-sweeper-{uuid.uuid4()}",  # each stack's own, on a shared server
            **SHORTENED_SETTINGS,
            **(env or {}),
        }
        stack = Stack(
            client=temporal.client,
            env=settings,
            data_dir=data_dir,
            sdk_url=sdk_url,
            cbs_url=cbs_url,
            api_url=f"http://127.0.0.1:{client_port}",
            backend_url=f"http://127.0.0.1:{backend_port}",
            api=None,  # type: ignore[arg-type]
            worker=None,  # type: ignore[arg-type]
        )
        api = stack.api = stack.api_process().start()  # up; /health needs the worker, started next
        stack.worker = stack.worker_process().start()
        yield stack
    finally:
        for process in (stack.worker if stack else None, api, cbs, sdk):
            if process is not None:
                process.stop()
