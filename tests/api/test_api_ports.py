"""`python -m api` serves two ports from one process: when either cannot be bound, the process stops at once with
one line naming the setting, rather than serving one API without the other."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Stack
from tests.support.process import free_port


@pytest.mark.parametrize("taken", ["MOJAFLOW_CLIENT_API_PORT", "MOJAFLOW_BACKEND_API_PORT"])
def test_a_port_in_use_stops_the_api_with_one_line(stack: Stack, taken: str) -> None:
    ports = {"MOJAFLOW_CLIENT_API_PORT": free_port(), "MOJAFLOW_BACKEND_API_PORT": free_port()}
    with socket.create_server(("127.0.0.1", ports[taken])):  # someone else's server holds it
        run = subprocess.run(
            [sys.executable, "-m", "api"],
            cwd=ROOT,
            env={**stack.env, **{name: str(port) for name, port in ports.items()}},
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert output.splitlines()[-1] == (
        f"mojaflow API cannot start: {taken}={ports[taken]} on 127.0.0.1: Address already in use"
    ), output
    assert "Traceback" not in output, output
