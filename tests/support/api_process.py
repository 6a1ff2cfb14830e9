"""One more `python -m api` next to the session's stack (same Temporal, worker, simulators and database), with
settings of its own, for tests of a setting the session's API runs with its default value.

    with api_process(stack, tmp_path, MOJAFLOW_BACKEND_ALLOWED_CLIENTS="10.0.0.0/8") as api:
        await http.get(f"{api.backend_url}/health")
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.auth import register_client_api
from tests.support.process import ServerProcess, free_port
from tests.support.stack import ROOT, Stack

__all__ = ["Api", "api_process"]


@dataclass
class Api:
    process: ServerProcess
    client_url: str
    backend_port: int

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"

    def security_lines(self) -> list[str]:
        """The lines its `mojaflow.security` logger wrote."""
        return [line for line in self.process.log_path.read_text().splitlines() if "mojaflow.security" in line]


@contextmanager
def api_process(stack: Stack, tmp_path: Path, **settings: str) -> Iterator[Api]:
    """`python -m api` with the stack's settings plus `settings` (MOJAFLOW_ names), on ports of its own; its log
    is `tmp_path / "api.log"`."""
    client_port, backend_port = free_port(), free_port()
    env = {
        **stack.env,
        "MOJAFLOW_CLIENT_API_PORT": str(client_port),
        "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
        **settings,
    }
    client_url = f"http://127.0.0.1:{client_port}"
    register_client_api(client_url, env)  # the tests' requests to it carry keys of its database
    process = ServerProcess(
        "api-under-test",
        [sys.executable, "-m", "api"],
        health_url=f"{client_url}/openapi.json",
        env=env,
        cwd=str(ROOT),
        log_path=tmp_path / "api.log",
    )
    with process:
        yield Api(process, client_url, backend_port)
