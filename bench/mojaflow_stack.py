"""The stack every bench scenario runs on, started on free ports of 127.0.0.1 in a data dir, the way `make run`
starts it: the Temporal dev server (headless, our search attributes, SQLite file, `MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS`
unless `pragmas` says otherwise, `MOJAFLOW_TEMPORAL_DYNAMIC_CONFIG` unless `dynamic_config` does), the SDK and CBS
simulators, our API and worker, and the bare baseline's workers (`bench/baseline.py`): `bare-fair-worker` (our
worker settings) and `bare-worker` (sandboxed, default options).

    stack = Stack(data_dir, profile_dir=None)
    client = await stack.start()
    ...
    stack.stop()   # every process by its PID, Temporal last
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.stack import Proc, free_port, http_ok, tcp_open
from bench.transfers import CLIENT_KEY
from mojaflow.settings import Settings
from mojaflow.temporal import dev_server_dynamic_config_flags, search_attribute_flags

__all__ = ["BARE_WORKERS", "Stack"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The bare workers: process name -> (task queue, `baseline.py worker` flags).
BARE_WORKERS = {"bare-fair-worker": ("bench-bare-fair", ["--fair"]), "bare-worker": ("bench-bare", [])}


@dataclass
class Stack:
    data_dir: Path
    profile_dir: Path | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    temporal_address: str = ""
    api_url: str = ""
    sdk_url: str = ""
    api_key: str = ""
    our_task_queue: str = "bench-mojaflow"
    extra_env: dict[str, str] = field(default_factory=dict)  # for our API and worker (a scenario's settings)
    pragmas: list[str] | None = None  # the dev server's SQLite pragmas; None: MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS's
    dynamic_config: list[str] | None = None  # the dev server's dynamic config; None: MOJAFLOW_TEMPORAL_DYNAMIC_CONFIG's
    bare_workers: tuple[str, ...] = tuple(BARE_WORKERS)

    def python(self, name: str, *argv: str) -> list[str]:
        """A Python child, under `bench/profiled.py` (cProfile in every thread) when profiling."""
        if self.profile_dir is None:
            return [sys.executable, *argv]
        profile = self.profile_dir / f"{name}.prof"
        return [sys.executable, str(ROOT / "bench" / "profiled.py"), str(profile), *argv]

    async def add(self, proc: Proc) -> Proc:
        self.procs[proc.name] = proc
        print(f"  starting {proc.name} …", end="", flush=True)
        started = time.perf_counter()
        await proc.start()
        print(f" pid {proc.pid}, {time.perf_counter() - started:.1f} s", flush=True)
        return proc

    def temporal_argv(self, port: int) -> list[str]:
        pragmas = Settings().temporal_sqlite_pragmas if self.pragmas is None else self.pragmas
        argv = [
            str(BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(self.data_dir / "temporal.db"), "--log-level", "warn",
        ]  # fmt: skip
        for pragma in pragmas:
            argv += ["--sqlite-pragma", pragma]
        dynamic_config = Settings().temporal_dynamic_config if self.dynamic_config is None else self.dynamic_config
        return argv + search_attribute_flags() + dev_server_dynamic_config_flags(dynamic_config)

    async def start(self) -> Client:
        log = self.data_dir
        temporal_port = free_port()
        self.temporal_address = f"127.0.0.1:{temporal_port}"
        argv = self.temporal_argv(temporal_port)
        await self.add(Proc("temporal", argv, log_path=log / "temporal.log", ready=tcp_open(temporal_port)))
        client = await _connect(self.temporal_address)

        sdk_port, cbs_port = free_port(), free_port()
        self.sdk_url, cbs_url = f"http://127.0.0.1:{sdk_port}", f"http://127.0.0.1:{cbs_port}"
        for name, module, port in (("sdk-sim", "simulators.sdk", sdk_port), ("cbs-sim", "simulators.cbs", cbs_port)):
            argv = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(self.data_dir / name)]
            await self.add(
                Proc(name, argv, log_path=log / f"{name}.log", ready=http_ok(f"http://127.0.0.1:{port}/health"),
                     cwd=str(ROOT))
            )  # fmt: skip

        client_port, backend_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{client_port}"
        env = {
            "MOJAFLOW_DATA_DIR": str(self.data_dir / "mojaflow"),
            "MOJAFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "MOJAFLOW_TASK_QUEUE": self.our_task_queue,
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(os.urandom(32)).decode(),
            "MOJAFLOW_SDK_URL": self.sdk_url,
            "MOJAFLOW_CBS_URL": cbs_url,
            "MOJAFLOW_CLIENT_API_PORT": str(client_port),
            "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
            "MOJAFLOW_RATE_LIMIT_PER_MINUTE": "0",  # one key sends every transfer: measure the stack, not the limit
            **self.extra_env,
        }
        (self.data_dir / "mojaflow").mkdir()
        made = subprocess.run(  # the client API's key, as an operator makes one
            [sys.executable, "-m", "mojaflow.cli", "keys", "create", "--client-key", CLIENT_KEY, "--name", "bench"],
            env={**os.environ, **env}, cwd=str(ROOT), capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.api_key = made.stdout.strip()
        await self.add(
            Proc("api", self.python("api", "-m", "api"), env=env, cwd=str(ROOT), log_path=log / "api.log",
                 ready=http_ok(f"{self.api_url}/openapi.json"))
        )  # fmt: skip
        await self.add(  # healthy once it polls our task queue
            Proc("worker", self.python("worker", "worker.py"), env=env, cwd=str(ROOT), log_path=log / "worker.log",
                 ready=http_ok(f"{self.api_url}/health"))
        )  # fmt: skip
        for name in self.bare_workers:
            queue, flags = BARE_WORKERS[name]
            argv = self.python(
                name, str(ROOT / "bench" / "baseline.py"), "worker", "--address", self.temporal_address,
                "--task-queue", queue, "--sdk-url", self.sdk_url, *flags,
            )  # fmt: skip
            await self.add(
                Proc(name, argv, cwd=str(ROOT), log_path=log / f"{name}.log", ready=_polled(client, queue))
            )  # fmt: skip
        return client

    def stop(self) -> None:
        """Everything of ours at once, then Temporal last (the workers shut down while it still answers)."""
        procs = list(self.procs.values())
        for proc in procs:
            if proc.name != "temporal":
                proc.terminate()
        for proc in reversed(procs):
            try:
                started = time.perf_counter()
                proc.stop()
                if time.perf_counter() - started > 3:
                    print(f"  ({proc.name} took {time.perf_counter() - started:.0f} s to stop)", flush=True)
            except Exception as error:  # noqa: BLE001 - stop the others anyway
                print(f"could not stop {proc.name} (pid {proc.popen.pid if proc.popen else '?'}): {error}")


async def _connect(address: str, timeout_s: float = 30) -> Client:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _polled(client: Client, task_queue: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        request = DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        response = await client.workflow_service.describe_task_queue(request)
        return bool(response.pollers)

    return ready
