"""Our APIs and our transfers' worker, traced, in this test process, next to the session's stack (same Temporal
server, simulators and database; a task queue and ports of their own): the spans they make are collected by an
in-memory exporter, through the same `Tracing` (redaction included) that `OTEL_EXPORTER_OTLP_ENDPOINT` turns on in
the real processes.

    async with traced_stack(stack) as traced:
        await http.post(f"{traced.api_url}/transfers", ...)
        spans = traced.exporter.get_finished_spans()

Each is served by uvicorn over real HTTP on 127.0.0.1, as `python -m api` serves it; the worker is
`worker.build_worker` on `worker.worker_resources`, as `python worker.py` builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import Resources, create_backend_app, create_client_app
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.temporal import connect
from mojaflow.tracing import Tracing
from tests.support.auth import register_client_api
from tests.support.process import free_port
from tests.support.stack import Stack
from tests.support.workers import settings_of
from worker import build_worker, worker_resources

__all__ = ["TracedStack", "traced_stack"]


@dataclass
class TracedStack:
    exporter: InMemorySpanExporter
    api_url: str
    backend_url: str


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # pytest keeps its own signal handlers
        yield


async def _started(server: _Server, task: asyncio.Task[None], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if task.done():
            task.result()  # its error, if any
            raise AssertionError("uvicorn stopped before it served")
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def traced_stack(stack: Stack, **settings: str) -> AsyncIterator[TracedStack]:
    """Both APIs and the worker, up; `settings` (MOJAFLOW_ names) on top of the stack's."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter, service_name="mojaflow-tests", batch=False)  # each span exported as it ends
    client_port, backend_port = free_port(), free_port()
    env = {
        **stack.env,
        "MOJAFLOW_TASK_QUEUE": f"tests-{uuid.uuid4()}",
        "MOJAFLOW_CLIENT_API_PORT": str(client_port),
        "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
        **settings,
    }
    config = settings_of(env)
    traced = TracedStack(exporter, f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{backend_port}")
    register_client_api(traced.api_url, env)  # the tests' requests carry keys of the stack's database
    client = await connect(config, interceptors=tracing.client_interceptors())
    database = Database(config.resolved_database_url, secrets=load_secrets_ring(config))
    resources = Resources(database=database, client=client, tracing=tracing)
    servers = [
        _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", http="h11"))
        for app, port in (
            (create_client_app(config, resources), client_port),
            (create_backend_app(config, resources), backend_port),
        )
    ]
    try:
        async with worker_resources(config, client, tracing) as objects, build_worker(client, config, objects):
            tasks = [asyncio.create_task(server.serve()) for server in servers]
            try:
                for server, task in zip(servers, tasks, strict=True):
                    await _started(server, task)
                yield traced
            finally:
                for server in servers:
                    server.should_exit = True
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await database.close()
        tracing.shutdown()
