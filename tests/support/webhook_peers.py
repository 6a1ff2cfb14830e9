"""The webhook tests' peers as real processes: the webhook receiver and the OAuth2 token server (simulators/).

`webhook_receiver(tmp_path)` is a `Peer`: its base `url`, its `process` (a `ServerProcess` not yet started: `with
peer.process.start(): ...`) and its `data_dir`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import ServerProcess, free_port

__all__ = ["Peer", "oauth_token_server", "webhook_receiver"]

_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Peer:
    url: str
    process: ServerProcess
    data_dir: Path


def _peer(module: str, name: str, base: Path, port: int | None) -> Peer:
    port = port or free_port()
    data_dir = base / "data"
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    url = f"http://127.0.0.1:{port}"
    process = ServerProcess(name, argv, health_url=f"{url}/health", cwd=str(_ROOT), log_path=base / f"{name}.log")
    return Peer(url, process, data_dir)


def webhook_receiver(base: Path, port: int | None = None) -> Peer:
    """`simulators.webhook_receiver` on a free port (or `port`), data and log under `base`; not started yet."""
    return _peer("simulators.webhook_receiver", "webhook-receiver", base, port)


def oauth_token_server(base: Path, port: int | None = None) -> Peer:
    """`simulators.oauth_token_server` on a free port (or `port`), data and log under `base`; not started yet."""
    return _peer("simulators.oauth_token_server", "oauth-token-server", base, port)
