"""Run a real server as a subprocess for a test, and stop exactly that process (by PID, never by name).

    with ServerProcess("sdk", [sys.executable, "-m", "simulators.sdk", "--port", str(port), ...],
                       health_url=f"http://127.0.0.1:{port}/health").start() as sdk:
        ...          # sdk.kill() simulates a crash; sdk.start() again restarts on the same data dir

The child gets its own process group (so a Ctrl-C in the terminal does not reach it) and writes stdout and
stderr to `log_path` (a temporary file if none), whose tail is put into the error when it fails to start.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from tests.support.secret_scan import remember_log

__all__ = ["ServerProcess", "free_port"]

_POLL_S = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1, free a moment ago, that no other test process and no outgoing connection will take
    before our server binds it: from this pytest-xdist process's own slice of the ports below the OS's ephemeral
    range (where the OS picks the local ports of outgoing connections, and the ports of a bind to port 0), once per
    process. A port the OS picks would be free only until someone else's connection took it."""
    slice_start = _FIRST_PORT + _xdist_index() % _SLICES * _SLICE_SIZE
    for _ in range(_SLICE_SIZE):
        port = _random.randrange(slice_start, slice_start + _SLICE_SIZE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # some other program's
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {slice_start}-{slice_start + _SLICE_SIZE - 1}")


_FIRST_PORT = 16000  # Linux's ephemeral range starts at 32768 by default (net.ipv4.ip_local_port_range)
_SLICE_SIZE = 4000
_SLICES = 4  # 16000-31999
_handed_out: set[int] = set()
_random = random.Random()  # its own: a test that seeds `random` must not make two processes pick alike


def _xdist_index() -> int:
    """0 for `gw0` or a run without xdist, 1 for `gw1`, …"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker[2:].isdigit() else 0


class ServerProcess:
    """A subprocess we started, polled healthy on `health_url`, stopped by its own PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        health_url: str,
        ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        log_path: Path | None = None,
        secret_scanned: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.health_url = health_url
        self.ready = ready  # instead of the GET on health_url (a server that speaks no HTTP, or not only)
        self.env = env
        self.cwd = cwd
        if log_path is None:
            handle, raw = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(handle)
            log_path = Path(raw)
        self.log_path = Path(log_path)
        if secret_scanned:  # searched for secrets at the end of the session (a test peer's log may opt out)
            remember_log(self.log_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def start(self, timeout_s: float = 30) -> ServerProcess:
        """Start the process and wait until `health_url` answers 200 (or `ready()` is true); raise with the log tail
        otherwise."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self._proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    self._close_log()
                    raise RuntimeError(f"{self.name} exited with {code} while starting:\n{self.log_tail()}")
                try:
                    if self.ready() if self.ready else client.get(self.health_url).status_code == 200:
                        return self
                except (httpx.HTTPError, OSError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"{self.name} not healthy after {timeout_s} s:\n{self.log_tail()}")
                time.sleep(_POLL_S)

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL. A no-op when not running."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL now (a crash) and wait for the exit."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
