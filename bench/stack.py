"""The processes of one isolated bench stack: started on free ports, measured with psutil, stopped by PID.

    proc = Proc("sdk-sim", [sys.executable, "-m", "simulators.sdk", ...], log_path=..., ready=http_ok(url))
    await proc.start()     # waits until `ready()` is true; raises with the log tail if the child dies
    proc.cpu_s()           # user + system CPU seconds of the process and its children so far
    proc.stop()            # SIGTERM to that PID, SIGKILL after a deadline

Each child runs in its own session, so a Ctrl-C in the terminal reaches the bench only, which stops them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx
import psutil

__all__ = ["Proc", "free_port", "http_ok", "tcp_open"]

Ready = Callable[[], Awaitable[bool]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> Ready:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def tcp_open(port: int, host: str = "127.0.0.1") -> Ready:
    async def ready() -> bool:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        return True

    return ready


class Proc:
    """A subprocess we started; measured and stopped by its own PID only."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_path: Path,
        ready: Ready,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready = ready
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ps: psutil.Process | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} is not started"
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    async def start(self, timeout_s: float = 60) -> Proc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open for the child's lifetime
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, start_new_session=True
        )
        self._ps = psutil.Process(self.popen.pid)
        deadline = time.monotonic() + timeout_s
        while not await self.ready():
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} while starting:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)
        return self

    def cpu_s(self) -> float:
        """User + system CPU seconds of this process and any children it runs."""
        assert self._ps is not None
        total = 0.0
        for proc in [self._ps, *self._ps.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of this process and any children it runs."""
        assert self._ps is not None
        total = 0
        for proc in [self._ps, *self._ps.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def thread_cpu_s(self) -> dict[str, float]:
        """CPU seconds per kind of thread: `main` (the asyncio loop of our Python processes), `tokio` (the
        Rust core of the Temporal SDK), `python-threads` (e.g. the workflow task executor), else by name."""
        assert self._ps is not None
        groups: dict[str, float] = {}
        for thread in self._ps.threads():
            if thread.id == self._ps.pid:
                group = "main"
            else:
                try:
                    comm = Path(f"/proc/{self._ps.pid}/task/{thread.id}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                group = "tokio" if comm.startswith("tokio") else re.sub(r"[\d.]+$", "", comm) or comm
                if group.startswith("python"):
                    group = "python-threads"
            groups[group] = groups.get(group, 0.0) + thread.user_time + thread.system_time
        return groups

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def terminate(self) -> None:
        """SIGTERM now, without waiting (`stop` waits)."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL. A no-op when not running."""
        popen = self.popen
        if popen is not None and popen.poll() is None:
            self.terminate()
            try:
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                popen.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
