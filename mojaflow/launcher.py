"""`make run`: mojaflow on one machine, in one foreground process.

Starts, in order, the Temporal dev server (SQLite in the data dir, Web UI, our search attributes, our codec
endpoint for the UI), the simulators of the SDK and the CBS and a webhook receiver (unless turned off), the worker
and the APIs (allowed to call 127.0.0.1 and localhost webhook URLs unless MOJAFLOW_WEBHOOK_ALLOWED_HOSTS says);
prefixes every line they log with the component's name; stops everything it started, by PID, on Ctrl-C or
SIGTERM (SIGKILL after a deadline). A second run on the same data dir resumes unfinished transfers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mojaflow.api_keys import ApiKeyStore, ensure_dev_key
from mojaflow.database import Database
from mojaflow.keys import load_party_hash_ring, load_payload_ring, load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.temporal import dev_server_flags, tls_enabled

__all__ = ["main"]

STOP_DEADLINE_S = 8.0
MAKE_RUN_ALLOWED_HOSTS = "127.0.0.1,localhost"
BIN = Path(sys.executable).parent


@dataclass
class Component:
    name: str
    argv: list[str]
    port: int
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 80


def _components(settings: Settings) -> list[Component]:
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
        components.append(Component("temporal", argv, port))
    if settings.sdk_simulator:
        _, port = _port_of(settings.sdk_url)
        argv = [sys.executable, "-m", "simulators.sdk", "--port", str(port), "--data-dir", str(data / "sdk-simulator"),
                "--party-timeout-s", str(settings.sdk_simulator_party_timeout_s)]  # fmt: skip
        components.append(Component("sdk-sim", argv, port))
    if settings.cbs_simulator:
        _, port = _port_of(settings.cbs_url)
        argv = [sys.executable, "-m", "simulators.cbs", "--port", str(port), "--data-dir", str(data / "cbs-simulator")]
        if settings.cbs_seed_file:
            argv += ["--seed", str(settings.cbs_seed_file)]
        components.append(Component("cbs-sim", argv, port))
    if settings.webhook_receiver_simulator:
        argv = [sys.executable, "-m", "simulators.webhook_receiver", "--port", str(settings.webhook_receiver_port),
                "--data-dir", str(data / "webhook-receiver")]  # fmt: skip
        components.append(Component("hook-sim", argv, settings.webhook_receiver_port))
    components.append(Component("worker", [sys.executable, "worker.py"], 0))
    components.append(Component("api", [sys.executable, "-m", "api"], settings.client_api_port))
    return components


def _child_env(settings: Settings) -> dict[str, str]:
    """The children's environment: make run's receiver (and other local test peers) are allowed webhook hosts,
    unless MOJAFLOW_WEBHOOK_ALLOWED_HOSTS was set (an empty value too); production's default allows none."""
    env = dict(os.environ)
    if "webhook_allowed_hosts" not in settings.model_fields_set:
        env["MOJAFLOW_WEBHOOK_ALLOWED_HOSTS"] = MAKE_RUN_ALLOWED_HOSTS
    return env


def _taken_ports(settings: Settings, components: list[Component]) -> list[str]:
    wanted = [(c.name, c.port) for c in components if c.port]
    if settings.temporal_dev_server:
        wanted.append(("temporal web UI", settings.temporal_ui_port))
    wanted.append(("backend api", settings.backend_api_port))
    taken = []
    for name, port in wanted:
        host = settings.backend_api_host if name == "backend api" else settings.api_host  # its own interface
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                taken.append(f"port {port} ({name}) is already in use")
    return taken


async def _pump(component: Component) -> None:
    assert component.process and component.process.stdout
    prefix = f"{component.name:>8} | "
    async for line in component.process.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_for_port(port: int, host: str, timeout_s: float, component: Component) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if component.process and component.process.returncode is not None:
            raise RuntimeError(f"{component.name} exited with code {component.process.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"{component.name} did not listen on port {port} within {timeout_s:.0f} s")


async def _stop(components: list[Component]) -> None:
    running = [c for c in reversed(components) if c.process and c.process.returncode is None]
    for component in running:  # the API and worker first, Temporal last
        assert component.process
        component.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(component.process.wait(), STOP_DEADLINE_S / max(len(running), 1))
        except TimeoutError:
            component.process.kill()
            await component.process.wait()


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


async def run(settings: Settings) -> int:
    if settings.temporal_dev_server and tls_enabled(settings):
        print(
            "mojaflow cannot start: MOJAFLOW_TEMPORAL_DEV_SERVER=true starts a plaintext dev server, but Temporal "
            "TLS or an API key is set: set MOJAFLOW_TEMPORAL_DEV_SERVER=false to use your cluster",
            file=sys.stderr,
        )
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    components = _components(settings)
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

    pumps = []
    env = _child_env(settings)
    try:
        for component in components:
            component.process = await asyncio.create_subprocess_exec(
                *component.argv,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
            pumps.append(asyncio.create_task(_pump(component)))
            if component.port:
                host = _port_of(settings.temporal_address)[0] if component.name == "temporal" else settings.api_host
                await _wait_for_port(component.port, host, 60, component)
        receiver = f", webhook receiver http://127.0.0.1:{settings.webhook_receiver_port}/_sim/events"
        print(
            f"mojaflow is up: client API {settings.client_api_url}/docs, backend API "
            f"{settings.backend_api_url}, Temporal Web UI "
            f"http://127.0.0.1:{settings.temporal_ui_port}{receiver if settings.webhook_receiver_simulator else ''}"
            "  (Ctrl-C stops)",
            flush=True,
        )
        exits = [asyncio.create_task(c.process.wait()) for c in components if c.process]
        waiter = asyncio.create_task(stop_requested.wait())
        await asyncio.wait([waiter, *exits], return_when=asyncio.FIRST_COMPLETED)
        failed = [(c.name, c.process.returncode) for c in components if c.process and c.process.returncode is not None]
        for name, code in failed:
            print(f"mojaflow: {name} exited with code {code}", file=sys.stderr)
        return 1 if failed and not stop_requested.is_set() else 0
    except RuntimeError as error:
        print(f"mojaflow cannot start: {error}", file=sys.stderr)
        return 1
    finally:
        await _stop(components)
        for pump in pumps:
            pump.cancel()


def main() -> None:
    sys.exit(asyncio.run(run(Settings())))


if __name__ == "__main__":
    main()
