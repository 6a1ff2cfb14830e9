"""Builders of simulator subprocesses for the simulator tests (real processes, free ports, own data dirs)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import ServerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

PARTY_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Sim:
    url: str
    process: ServerProcess
    data_dir: Path


def sdk_process(data_dir: Path, log_path: Path, port: int | None = None) -> tuple[ServerProcess, str]:
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "simulators.sdk",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--party-timeout-s",
        str(PARTY_TIMEOUT_S),
    ]
    url = f"http://127.0.0.1:{port}"
    return ServerProcess("sdk-sim", argv, health_url=f"{url}/health", cwd=str(REPO_ROOT), log_path=log_path), url


def cbs_process(
    data_dir: Path, log_path: Path, port: int | None = None, seed: Path | None = None
) -> tuple[ServerProcess, str]:
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "simulators.cbs",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if seed is not None:
        argv += ["--seed", str(seed)]
    url = f"http://127.0.0.1:{port}"
    return ServerProcess("cbs-sim", argv, health_url=f"{url}/health", cwd=str(REPO_ROOT), log_path=log_path), url
