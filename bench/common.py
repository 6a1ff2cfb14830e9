"""What every scenario of `bench/bench.py` shares: a running stack in a temporary data dir, an HTTP client on our
client API, and the JSON written into bench/results/ with the machine, the commit and the load average."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import temporalio
from temporalio.client import Client

from bench.mojaflow_stack import Stack
from bench.phase import cores, loadavg

__all__ = ["RESULTS", "ROOT", "api_client", "machine", "running_stack", "write_result"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent


@asynccontextmanager
async def running_stack(args: argparse.Namespace, label: str, **options: Any) -> AsyncIterator[tuple[Stack, Client]]:
    """A stack in its own data dir (removed afterwards unless --keep or --profile); stopped by PID on the way out."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"mojaflow-bench-{label}-"))
    profile_dir = data_dir / "profiles" if getattr(args, "profile", False) else None
    if profile_dir:
        profile_dir.mkdir()
    stack = Stack(data_dir=data_dir, profile_dir=profile_dir, **options)
    print(f"{label}: data in {data_dir}", flush=True)
    try:
        yield stack, await stack.start()
    finally:
        print("  stopping the stack …", flush=True)
        stack.stop()
        if profile_dir:
            print(f"  profiles (cProfile, all threads; CPU figures inflated by profiling): {profile_dir}")
        if not (args.keep or profile_dir):
            shutil.rmtree(data_dir, ignore_errors=True)


def api_client(stack: Stack, concurrency: int) -> httpx.AsyncClient:
    """Our client API's key on every request, a connection per transfer in flight."""
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    return httpx.AsyncClient(timeout=90, limits=limits, headers={"Authorization": f"Bearer {stack.api_key}"})


def machine() -> dict[str, Any]:
    return {
        "cores": cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "temporal_cli": _run([str(BIN / "temporal"), "--version"]),
    }


def write_result(scenario: str, args: argparse.Namespace, loadavg_before: list[float], result: dict[str, Any]) -> Path:
    """bench/results/<scenario>-<UTC>.json: the figures with what they depend on."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "scenario": scenario,
        "timestamp": stamp,
        "git": _git_head(),
        "args": {key: value for key, value in vars(args).items() if key != "scenario"},
        "machine": machine(),
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg(),
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"(results: {path.relative_to(ROOT)}; load average before {loadavg_before}, after {record['loadavg_after']})")
    return path


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _git_head() -> str:
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return _run(["git", "rev-parse", "--short", "HEAD"]) + ("-dirty" if dirty else "")
