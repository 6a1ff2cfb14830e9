"""The real Mojaloop side of the end-to-end tests, on 127.0.0.1 only, each a process we start and stop by PID:

    Redis ── the SDK's cache and pub/sub
    @mojaloop/sdk-scheme-adapter 18.0.2 ── outbound API (mojaflow's MOJAFLOW_SDK_URL), inbound API (FSPIOP), and
        BACKEND_ENDPOINT = mojaflow's backend API; AUTO_ACCEPT_PARTY/QUOTES=false, RESERVE_NOTIFICATION=true
    the switch front (e2e/harness/switch.py) ── every FSPIOP message between the SDK and TTK, both ways
    ml-testing-toolkit 18.19.2 ── the switch and the payee's (or payer's) FSP, rules in e2e/harness/ttk_rules.py
    the Connection Manager stand-in (e2e/harness/mcm.py) ── JWS only: TTK's source of certificates

    with mojaloop_stack(work_dir, backend_port=..., jws=False) as mojaloop:
        mojaloop.sdk_outbound_url ...

Installed by e2e/install.sh (outside the repository); the Node processes load e2e/node/loopback.js, which binds
every server to 127.0.0.1, moves TTK's fixed admin port to a free one and refuses any other destination.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2e.harness.jws import JwsKeys, make_keys
from e2e.harness.ttk import TtkPorts, prepare_ttk
from tests.support.process import ServerProcess, free_port

__all__ = ["E2E", "SDK_VERSION", "TTK_VERSION", "Mojaloop", "install", "mojaloop_stack"]

E2E = Path(__file__).resolve().parents[1]
ROOT = E2E.parent
SDK_VERSION = "18.0.2"
TTK_VERSION = "18.19.2"
TTK_ADMIN_PORT = 5050  # hard-coded in TTK: loopback.js moves it
# Short enough for the tests' waits, long enough for 2 busy cores: the SDK gives up on a callback after
# REQUEST_PROCESSING_TIMEOUT_SECONDS; a prepare expires EXPIRY_SECONDS after it is sent (mojaflow's
# MOJAFLOW_TRANSFER_EXPIRY_S must be at least that).
SDK_CALLBACK_TIMEOUT_S = 8
SDK_EXPIRY_S = 14  # leaves a prepare unanswered by TTK some seconds RESERVED after the SDK's 504


@dataclass
class Mojaloop:
    sdk_outbound_url: str
    sdk_inbound_url: str
    switch_url: str  # the switch front, SDK side: its /_switch/ controls
    ttk_admin_url: str
    jws: JwsKeys | None
    processes: dict[str, ServerProcess] = field(default_factory=dict)

    @property
    def sdk(self) -> ServerProcess:
        return self.processes["sdk"]

    def guard_refusals(self) -> list[str]:
        """Lines where loopback.js refused a destination other than loopback (there must be none)."""
        return [
            f"{name}: {line}"
            for name, process in self.processes.items()
            for line in process.log_path.read_text(errors="replace").splitlines()
            if line.startswith("[loopback]")
        ]


def install() -> Path:
    """e2e/install.sh (a no-op once installed): the directory holding sdk/ and ttk/."""
    done = subprocess.run(["bash", str(E2E / "install.sh")], capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"e2e/install.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


def _node_env(extra: dict[str, str]) -> dict[str, str]:
    return {"NODE_OPTIONS": f"--require {E2E / 'node' / 'loopback.js'}", **extra}


@contextmanager
def mojaloop_stack(work_dir: Path, *, backend_port: int, jws: bool = False, **sdk_env: str) -> Iterator[Mojaloop]:
    """Start Redis, TTK, the switch front (and the MCM stand-in) and the SDK; stop exactly those on exit."""
    installed = install()
    work_dir.mkdir(parents=True, exist_ok=True)
    keys = make_keys(work_dir / "jws") if jws else None
    ports = {name: free_port() for name in ("redis", "ttk_api", "ttk_admin", "sdk_side", "ttk_side", "mcm",
                                            "sdk_in", "sdk_out", "sdk_test", "sdk_metrics", "sdk_ws")}  # fmt: skip
    mojaloop = Mojaloop(
        sdk_outbound_url=f"http://127.0.0.1:{ports['sdk_out']}",
        sdk_inbound_url=f"http://127.0.0.1:{ports['sdk_in']}",
        switch_url=f"http://127.0.0.1:{ports['sdk_side']}",
        ttk_admin_url=f"http://127.0.0.1:{ports['ttk_admin']}",
        jws=keys,
    )
    with ExitStack() as running:

        def start(process: ServerProcess, timeout_s: float = 60) -> None:
            mojaloop.processes[process.name] = process
            running.callback(process.stop)
            process.start(timeout_s=timeout_s)

        logs = work_dir / "logs"
        start(ServerProcess(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(ports["redis"]), "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--dir", str(work_dir)],
            health_url="", ready=lambda: _port_open(ports["redis"]), log_path=logs / "redis.log",
        ))  # fmt: skip
        if keys is not None:
            start(ServerProcess(
                "mcm",
                [sys.executable, "-m", "e2e.harness.mcm", "--port", str(ports["mcm"]),
                 "--cert", f"pm4mldfsp={keys.sdk_cert}", "--cert", f"testingtoolkitdfsp={keys.switch_cert}"],
                health_url=f"http://127.0.0.1:{ports['mcm']}/health", cwd=str(ROOT), log_path=logs / "mcm.log",
            ))  # fmt: skip
        ttk_package = installed / "ttk" / "node_modules" / "ml-testing-toolkit"
        to_sdk = f"http://127.0.0.1:{ports['ttk_side']}"
        prepare_ttk(ttk_package, work_dir / "ttk-run", TtkPorts(ports["ttk_api"], to_sdk, ports["mcm"]), keys)
        start(ServerProcess(
            "ttk",
            ["node", str(ttk_package / "src" / "index.js")],
            health_url=f"{mojaloop.ttk_admin_url}/api/config/user",
            ready=lambda: _http_ok(f"{mojaloop.ttk_admin_url}/api/config/user") and _port_open(ports["ttk_api"]),
            env=_node_env({"MOJAFLOW_E2E_PORT_MAP": f"{TTK_ADMIN_PORT}={ports['ttk_admin']}"}),
            cwd=str(work_dir / "ttk-run"),
            # TTK plays the peer DFSP and the switch, not a part of a bank's installation: its log (which shows
            # every JWS it checks, shaped like a JWT) is left out of the session's secret scan (not named *.log)
            log_path=logs / "ttk.out",
            secret_scanned=False,
        ))  # fmt: skip
        switch = [sys.executable, "-m", "e2e.harness.switch", "--sdk-side", str(ports["sdk_side"]),
                  "--ttk-side", str(ports["ttk_side"]), "--ttk-url", f"http://127.0.0.1:{ports['ttk_api']}",
                  "--sdk-inbound-url", mojaloop.sdk_inbound_url]  # fmt: skip
        if keys is not None:
            switch += ["--jws-key", str(keys.switch_key)]
        start(ServerProcess("switch", switch, health_url=f"{mojaloop.switch_url}/health", cwd=str(ROOT),
                            log_path=logs / "switch.log"))  # fmt: skip
        sdk_run = work_dir / "sdk-run"  # the SDK reads a .env from its working directory: this one has none
        sdk_run.mkdir(exist_ok=True)
        env = _sdk_env(ports, backend_port, keys) | sdk_env
        start(ServerProcess(
            "sdk",
            ["node", str(installed / "sdk" / "node_modules" / "@mojaloop" / "sdk-scheme-adapter" / "src" / "index.js")],
            health_url=f"{mojaloop.sdk_outbound_url}/",
            ready=lambda: _http_ok(f"{mojaloop.sdk_outbound_url}/") and _port_open(ports["sdk_in"]),
            env=_node_env(env),
            cwd=str(sdk_run),
            log_path=logs / "sdk.log",
        ))  # fmt: skip
        yield mojaloop


def _sdk_env(ports: dict[str, int], backend_port: int, keys: JwsKeys | None) -> dict[str, str]:
    switch = f"127.0.0.1:{ports['sdk_side']}"  # host:port, no scheme: the SDK prepends http://
    env = {
        "INBOUND_LISTEN_PORT": ports["sdk_in"], "OUTBOUND_LISTEN_PORT": ports["sdk_out"],
        "TEST_LISTEN_PORT": ports["sdk_test"], "METRICS_SERVER_LISTEN_PORT": ports["sdk_metrics"],
        "MGMT_API_WS_URL": "127.0.0.1", "MGMT_API_WS_PORT": ports["sdk_ws"], "PM4ML_ENABLED": "false",
        "DFSP_ID": "pm4mldfsp", "CACHE_URL": f"redis://127.0.0.1:{ports['redis']}",
        "PEER_ENDPOINT": switch, "ALS_ENDPOINT": switch, "QUOTES_ENDPOINT": switch, "TRANSFERS_ENDPOINT": switch,
        "BULK_QUOTES_ENDPOINT": switch, "BULK_TRANSFERS_ENDPOINT": switch, "TRANSACTION_REQUESTS_ENDPOINT": switch,
        "BACKEND_ENDPOINT": f"127.0.0.1:{backend_port}",
        # mojaflow decides on party and quote itself; the switch's final PATCH reaches our backend API
        "AUTO_ACCEPT_PARTY": "false", "AUTO_ACCEPT_QUOTES": "false", "AUTO_ACCEPT_PARTICIPANTS_PUT": "false",
        "RESERVE_NOTIFICATION": "true", "SEND_FINAL_NOTIFICATION_IF_REQUESTED": "false",
        "MULTIPLE_PARTIES_RESPONSE": "false",
        "INBOUND_MUTUAL_TLS_ENABLED": "false", "OUTBOUND_MUTUAL_TLS_ENABLED": "false",
        # these default to true in 18.0.2: off unless the run is about JWS
        "JWS_SIGN": "false", "JWS_SIGN_PUT_PARTIES": "false",
        "VALIDATE_INBOUND_JWS": "false", "VALIDATE_INBOUND_PUT_PARTIES_JWS": "false",
        "ILP_SECRET": f"e2e-{os.urandom(8).hex()}", "CHECK_ILP": "true",
        "EXPIRY_SECONDS": SDK_EXPIRY_S, "REQUEST_PROCESSING_TIMEOUT_SECONDS": SDK_CALLBACK_TIMEOUT_S,
        "ALLOW_TRANSFER_WITHOUT_QUOTE": "false", "ENABLE_TEST_FEATURES": "false",
        "ENABLE_OAUTH_TOKEN_ENDPOINT": "false", "LOG_INDENT": "0",
    }  # fmt: skip
    if keys is not None:
        env |= {
            "JWS_SIGN": "true", "JWS_SIGN_PUT_PARTIES": "true",
            "VALIDATE_INBOUND_JWS": "true", "VALIDATE_INBOUND_PUT_PARTIES_JWS": "true",
            "JWS_SIGNING_KEY_PATH": str(keys.sdk_key), "JWS_VERIFICATION_KEYS_DIRECTORY": str(keys.sdk_trusts),
        }  # fmt: skip
    return {name: str(value) for name, value in env.items()}
