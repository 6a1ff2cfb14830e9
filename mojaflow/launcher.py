"""`make run`: mojaflow on one machine, in one foreground process.

Starts, in order, the Temporal dev server (SQLite in the data dir, Web UI, our search attributes, our codec
endpoint for the UI), the simulators of the SDK and the CBS and a webhook receiver (unless turned off), the
worker(s) (`--workers N`, `make run RUN_ARGS="--workers 3"`) and the APIs (allowed to call 127.0.0.1 and localhost
webhook URLs unless MOJAFLOW_WEBHOOK_ALLOWED_HOSTS says); prefixes every line they log with the component's name;
restarts a worker or API process that dies, and stops everything when the dev server or a simulator dies
(mojaflow/supervision.py); stops everything it started, by PID, on Ctrl-C or SIGTERM (SIGKILL after a deadline).
A second run on the same data dir resumes unfinished transfers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from temporalio.service import RPCError

from mojaflow.api_keys import ApiKeyStore, ensure_dev_key
from mojaflow.database import Database
from mojaflow.keys import load_party_hash_ring, load_payload_ring, load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.supervision import Component, Supervisor
from mojaflow.temporal import (
    TemporalConnectError,
    connect,
    dev_server_flags,
    register_search_attributes,
    tls_enabled,
)

__all__ = ["main"]

MAKE_RUN_ALLOWED_HOSTS = "127.0.0.1,localhost"
BIN = Path(sys.executable).parent


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 80


def _components(settings: Settings, workers: int = 1) -> list[Component]:
    data = settings.data_dir.resolve()
    components: list[Component] = []
    if settings.temporal_dev_server:
        host, port = _port_of(settings.temporal_address)
        argv = [
            str(BIN / "temporal"), "server", "start-dev", "--ip", host, "--port", str(port),
            "--ui-port", str(settings.temporal_ui_port), "--db-filename", str(data / "temporal.db"),
            "--namespace", settings.temporal_namespace, "--log-level", "warn",
            "--ui-codec-endpoint", f"http://{settings.api_host}:{settings.client_api_port}/codec",
        ]  # fmt: skip
        argv += dev_server_flags(settings)
        components.append(Component("temporal", argv, port, host))
    if settings.sdk_simulator:
        _, port = _port_of(settings.sdk_url)
        argv = [sys.executable, "-m", "simulators.sdk", "--port", str(port), "--data-dir", str(data / "sdk-simulator"),
                "--party-timeout-s", str(settings.sdk_simulator_party_timeout_s)]  # fmt: skip
        components.append(Component("sdk-sim", argv, port, settings.api_host))
    if settings.cbs_simulator:
        _, port = _port_of(settings.cbs_url)
        argv = [sys.executable, "-m", "simulators.cbs", "--port", str(port), "--data-dir", str(data / "cbs-simulator")]
        if settings.cbs_seed_file:
            argv += ["--seed", str(settings.cbs_seed_file)]
        components.append(Component("cbs-sim", argv, port, settings.api_host))
    if settings.webhook_receiver_simulator:
        argv = [sys.executable, "-m", "simulators.webhook_receiver", "--port", str(settings.webhook_receiver_port),
                "--data-dir", str(data / "webhook-receiver")]  # fmt: skip
        components.append(Component("hook-sim", argv, settings.webhook_receiver_port, settings.api_host))
    for number in range(1, workers + 1):  # they share the task queues: Temporal spreads the work
        name = "worker" if workers == 1 else f"worker-{number}"
        env = {}
        if settings.worker_metrics_port is not None:  # one port each: worker i serves its metrics on port + i - 1
            env["MOJAFLOW_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + number - 1)
        components.append(Component(name, [sys.executable, "worker.py"], restart=True, env=env))
    components.append(
        Component("api", [sys.executable, "-m", "api"], settings.client_api_port, settings.api_host, restart=True)
    )
    return components


def _child_env(settings: Settings) -> dict[str, str]:
    """The children's environment: make run's receiver (and other local test peers) are allowed webhook hosts,
    unless MOJAFLOW_WEBHOOK_ALLOWED_HOSTS was set (an empty value too); production's default allows none. Logs
    are for the console unless MOJAFLOW_LOG_FORMAT says."""
    env = dict(os.environ)
    if "log_format" not in settings.model_fields_set:  # for the person watching; a deployment's default is json
        env["MOJAFLOW_LOG_FORMAT"] = "console"
    if "webhook_allowed_hosts" not in settings.model_fields_set:
        env["MOJAFLOW_WEBHOOK_ALLOWED_HOSTS"] = MAKE_RUN_ALLOWED_HOSTS
    return env


def _taken_ports(settings: Settings, components: list[Component]) -> list[str]:
    wanted = [(c.name, c.port) for c in components if c.port]
    if settings.temporal_dev_server:
        wanted.append(("temporal web UI", settings.temporal_ui_port))
    wanted.append(("backend api", settings.backend_api_port))
    metrics = [(f"{c.name} metrics", int(c.env["MOJAFLOW_WORKER_METRICS_PORT"]))
               for c in components if "MOJAFLOW_WORKER_METRICS_PORT" in c.env]  # fmt: skip
    hosts = {"backend api": settings.backend_api_host, **{name: settings.worker_metrics_host for name, _ in metrics}}
    taken = []
    for name, port in wanted + metrics:
        host = hosts.get(name, settings.api_host)  # its own interface
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                taken.append(f"port {port} ({name}) is already in use")
    return taken


async def _dev_key(settings: Settings, database: Database) -> None:
    """The development API key (`mojaflow.api_keys.ensure_dev_key`): printed when made, on first start only."""
    path = settings.data_dir / "dev-api-key"
    outcome, key = await ensure_dev_key(ApiKeyStore(database, load_secrets_ring(settings)), path)
    if outcome == "made":
        print(f"mojaflow: development API key (client_key bank1, operator), also in {path} (0600): {key}", flush=True)
    elif outcome == "refused":
        print(f"mojaflow: {path} holds a key this database does not accept (revoked?): delete it for a new one")
    else:
        print(f"mojaflow: development API key in {path}", flush=True)


async def _search_attributes(settings: Settings) -> None:
    """The dev server's database may come from an earlier version: add the search attributes it lacks, once the
    server answers (its port opens a moment before its namespace is ready)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            added = await register_search_attributes(await connect(settings))
        except (TemporalConnectError, RPCError):
            if time.monotonic() > deadline:
                raise RuntimeError("the Temporal dev server did not answer within 30 s") from None
            await asyncio.sleep(0.5)
            continue
        if added:
            print(f"mojaflow: search attributes added to the dev server: {', '.join(added)}", flush=True)
        return


async def run(settings: Settings, workers: int = 1) -> int:
    if settings.temporal_dev_server and tls_enabled(settings):
        print(
            "mojaflow cannot start: MOJAFLOW_TEMPORAL_DEV_SERVER=true starts a plaintext dev server, but Temporal "
            "TLS or an API key is set: set MOJAFLOW_TEMPORAL_DEV_SERVER=false to use your cluster",
            file=sys.stderr,
        )
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    components = _components(settings, workers)
    taken = _taken_ports(settings, components)
    if taken:
        print("mojaflow cannot start: " + "; ".join(taken), file=sys.stderr)
        return 2
    try:
        for load_ring in (load_payload_ring, load_secrets_ring, load_party_hash_ring):
            load_ring(settings)  # generate the data-dir rings once (when not set), before any child races to
    except ValueError as error:  # a malformed ring: the message names its setting, never a key
        print(f"mojaflow cannot start: {error}", file=sys.stderr)
        return 2
    database = Database(settings.resolved_database_url)
    await database.create_schema()
    if settings.auth == "api_key":
        await _dev_key(settings, database)
    await database.close()

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    supervisor = Supervisor(components, _child_env(settings))
    try:
        for component in components:
            await supervisor.start(component)
            if component.name == "temporal":
                await _search_attributes(settings)
        receiver = f", webhook receiver http://127.0.0.1:{settings.webhook_receiver_port}/_sim/events"
        print(
            f"mojaflow is up: client API {settings.client_api_url}/docs, backend API "
            f"{settings.backend_api_url}, Temporal Web UI "
            f"http://127.0.0.1:{settings.temporal_ui_port}{receiver if settings.webhook_receiver_simulator else ''}"
            "  (Ctrl-C stops)",
            flush=True,
        )
        return await supervisor.supervise(stop_requested)
    except RuntimeError as error:
        print(f"mojaflow cannot start: {error}", file=sys.stderr)
        return 1
    finally:
        await supervisor.stop()


def _workers(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make run", description="mojaflow on this machine (README, Run it)")
    parser.add_argument("--workers", type=_workers, default=1, help="worker processes to run (default 1)")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(run(Settings(), args.workers)))


if __name__ == "__main__":
    main()
