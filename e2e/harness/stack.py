"""mojaflow against the real SDK: the Mojaloop side (e2e/harness/mojaloop.py), then the CBS simulator, our API and
our worker (each a process, as in tests/support/stack.py) with MOJAFLOW_SDK_URL = the real SDK's outbound API and
the SDK's BACKEND_ENDPOINT = our backend API. Everything on free ports of 127.0.0.1; stopped by PID on exit.

    with e2e_stack(temporal, payload_key, data_dir) as (stack, mojaloop):
        stack.api_url, stack.worker (a ServerProcess to SIGKILL), mojaloop.sdk (the SDK's)
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from e2e.harness.mojaloop import SDK_EXPIRY_S, Mojaloop, mojaloop_stack
from tests.support.process import ServerProcess, free_port
from tests.support.stack import ROOT, Stack

__all__ = ["E2E_SETTINGS", "e2e_stack"]

# As tests/support/stack.py shortens them, fitted to the real SDK: a prepare may stay unresolved for as long as
# the SDK's EXPIRY_SECONDS (never less), then the 3208 grace.
E2E_SETTINGS = {
    "MOJAFLOW_SDK_SIMULATOR": "false",
    "MOJAFLOW_DEFAULT_WAIT_S": "20",
    "MOJAFLOW_ACCEPTANCE_TIMEOUT_S": "60",
    "MOJAFLOW_MAX_FEE": "5",
    "MOJAFLOW_TRANSFER_EXPIRY_S": str(SDK_EXPIRY_S),
    "MOJAFLOW_RECONCILE_GRACE_S": "2",
    "MOJAFLOW_RECONCILE_MAX_INTERVAL_S": "1",
    "MOJAFLOW_QUOTE_EXPIRY_S": "60",
}


@contextmanager
def e2e_stack(
    temporal: WorkflowEnvironment, payload_key: bytes, data_dir: Path, *, jws: bool = False, **settings: str
) -> Iterator[tuple[Stack, Mojaloop]]:
    client_port, backend_port = free_port(), free_port()
    with ExitStack() as running:
        mojaloop = running.enter_context(mojaloop_stack(data_dir / "mojaloop", backend_port=backend_port, jws=jws))
        cbs_port = free_port()
        cbs = ServerProcess(
            "cbs-simulator",
            [sys.executable, "-m", "simulators.cbs", "--port", str(cbs_port), "--data-dir", str(data_dir / "cbs")],
            health_url=f"http://127.0.0.1:{cbs_port}/health",
            cwd=str(ROOT),
            log_path=data_dir / "cbs-simulator.log",
        )
        running.callback(cbs.stop)
        cbs.start()
        env = {
            "MOJAFLOW_DATA_DIR": str(data_dir),
            "MOJAFLOW_TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
            "MOJAFLOW_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(payload_key).decode(),
            "MOJAFLOW_SDK_URL": mojaloop.sdk_outbound_url,
            "MOJAFLOW_CBS_URL": f"http://127.0.0.1:{cbs_port}",
            "MOJAFLOW_CLIENT_API_PORT": str(client_port),
            "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
            **E2E_SETTINGS,
            **settings,
        }
        stack = Stack(
            client=temporal.client,
            env=env,
            data_dir=data_dir,
            sdk_url=mojaloop.sdk_outbound_url,
            cbs_url=env["MOJAFLOW_CBS_URL"],
            api_url=f"http://127.0.0.1:{client_port}",
            backend_url=f"http://127.0.0.1:{backend_port}",
            api=None,  # type: ignore[arg-type]
            worker=None,  # type: ignore[arg-type]
        )
        stack.api = stack.api_process().start()
        running.callback(lambda: stack.api.stop())
        stack.worker = stack.worker_process().start()
        running.callback(lambda: stack.worker.stop())  # the one running at the end (a test may replace it)
        yield stack, mojaloop
