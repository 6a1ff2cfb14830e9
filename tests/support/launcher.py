"""`make run`'s launcher (`python -m mojaflow.launcher`) started by a test, on ports of its own.

    env = launcher_env(tmp_path)                 # every port free, the data dir in tmp_path
    launcher = launch(env, tmp_path / "launcher.log", "--workers", "3")
    announced_pids(log)["worker-2"]              # as the launcher announced it: the only PIDs a test may signal

The launcher's children are ours too: it started them, and announces each PID (`mojaflow: started worker-1 (pid
1234)`); a test signals one of those, never anything found by name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.process import free_port
from tests.support.stack import ROOT

__all__ = ["announced_pids", "launch", "launcher_env", "wait_healthy"]

# make run's own defaults for its children (mojaflow/launcher.py `_child_env`): a test's environment must not set them
_MAKE_RUNS_DEFAULTS = ("MOJAFLOW_WEBHOOK_ALLOWED_HOSTS", "MOJAFLOW_LOG_FORMAT")


def launcher_env(data_dir: Path) -> dict[str, str]:
    """This process's environment, with the data dir and every port and URL of make run's stack on free ports."""
    inherited = {k: v for k, v in os.environ.items() if k not in _MAKE_RUNS_DEFAULTS}
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "MOJAFLOW_DATA_DIR": str(data_dir),
        "MOJAFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "MOJAFLOW_TEMPORAL_UI_PORT": str(free_port()),
        "MOJAFLOW_CLIENT_API_PORT": str(free_port()),
        "MOJAFLOW_BACKEND_API_PORT": str(free_port()),
        "MOJAFLOW_SDK_URL": f"http://127.0.0.1:{free_port()}",
        "MOJAFLOW_CBS_URL": f"http://127.0.0.1:{free_port()}",
        "MOJAFLOW_WEBHOOK_RECEIVER_PORT": str(free_port()),
        "MOJAFLOW_TRANSFER_EXPIRY_S": "5",
    }


def launch(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """The launcher in a session of its own (a Ctrl-C in the terminal reaches the test only), its output in `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mojaflow.launcher", *args], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def announced_pids(log: Path) -> dict[str, int]:
    """Each component's latest PID, as the launcher announces it (`mojaflow: started worker-1 (pid 1234)`)."""
    return {name: int(pid) for name, pid in re.findall(r"mojaflow: started (\S+) \(pid (\d+)\)", log.read_text())}


def wait_healthy(api: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    """Poll the client API's `/health` (Temporal and a worker answer) until 200; fail with the log's tail if the
    launcher exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"mojaflow never became healthy:\n{log.read_text()[-3000:]}")
