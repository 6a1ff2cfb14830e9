"""Scenario `growth`: does a transfer cost more once the databases hold many? On one stack:

1. `--sequential` transfers one at a time (POST p50), and 100 each of `GET /transfers`: the first page, a page
   filtered by state (`ABORTED`: none, the whole index is searched), and one by `homeTransactionId`;
   the bytes in use in our database and in Temporal's (pages in use, write-ahead log included).
2. `--grow N` transfers at concurrency C (2000 by default, ~4 minutes on 2 cores; issue 12 asks for 100 000,
   hours here).
3. 1. again: change of each figure (issue 12: ≤ 20 %), and bytes per transfer in each database.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import api_client, running_stack
from bench.phase import Phase, cores, percentile, run_phase
from bench.transfers import mojaflow_transfer, money_movement_headers, transfer_body

__all__ = ["run"]

READS = 100


async def run(args: argparse.Namespace) -> dict[str, Any]:
    print(f"growth: {args.grow} transfers at concurrency {args.concurrency} between two measurements")
    async with (
        running_stack(args, "growth", bare_workers=()) as (stack, _),
        api_client(stack, args.concurrency) as http,
    ):
        one = mojaflow_transfer(http, stack.api_url, [])
        await run_phase(Phase("warm-up", args.warmup, args.concurrency), args.warmup, one, {}, [])
        marked = transfer_body()  # a transfer to find by its homeTransactionId
        (
            await http.post(f"{stack.api_url}/transfers", headers=money_movement_headers(), json=marked)
        ).raise_for_status()
        reads = {
            "first page": {},
            "state=ABORTED": {"state": "ABORTED"},
            "homeTransactionId": {"homeTransactionId": marked["homeTransactionId"]},
        }
        files = {"ours": stack.data_dir / "mojaflow" / "mojaflow.db", "temporal": stack.data_dir / "temporal.db"}
        before = await measure(http, stack.api_url, one, reads, files, args.sequential)
        print(f"  growing by {args.grow} transfers …", flush=True)
        grow = await run_phase(Phase("grow", args.grow, args.concurrency), args.grow, one, stack.procs, [])
        after = await measure(http, stack.api_url, one, reads, files, args.sequential)
    return report(args.grow, before, grow, after)


async def measure(
    http: httpx.AsyncClient,
    api_url: str,
    one: Any,
    reads: dict[str, dict[str, str]],
    files: dict[str, Path],
    sequential: int,
) -> dict[str, Any]:
    posts = await run_phase(Phase("post", sequential, 1), sequential, one, {}, [])
    get_ms: dict[str, float] = {}
    for name, params in reads.items():
        latencies = []
        for _ in range(READS):
            started = time.perf_counter()
            (await http.get(f"{api_url}/transfers", params=params)).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
        get_ms[name] = round(percentile(latencies, 0.95), 1)
    return {
        "post_p50_ms": round(posts.percentile(0.5), 1),
        "post_failures": posts.failures[:5],
        "get_p95_ms": get_ms,
        "bytes": {name: _size(path) for name, path in files.items()},
    }


def _size(path: Path) -> int:
    """The bytes a SQLite database uses: its pages in use, as a reader sees them (write-ahead log included),
    not the files' sizes (the log's file is reused, not shrunk)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before:+.0%}" if before else "?"


def report(grown: int, before: dict[str, Any], grow: Phase, after: dict[str, Any]) -> dict[str, Any]:
    print()
    for failure in (before["post_failures"] + grow.failures + after["post_failures"])[:5]:
        print(f"  failure: {failure}")
    print(f"grew by {grow.ok} transfers in {grow.wall_s:.0f} s ({grow.throughput:.1f}/s, "
          f"others used {grow.background_share(cores()):.0%} of the machine)")  # fmt: skip
    print(f"{'':30}{'before':>10}{'after':>10}{'change':>9}   (target: change <= +20 %)")
    rows = [("POST /transfers p50 ms", before["post_p50_ms"], after["post_p50_ms"])]
    rows += [
        (f"GET {name} p95 ms", before["get_p95_ms"][name], after["get_p95_ms"][name]) for name in before["get_p95_ms"]
    ]
    for label, old, new in rows:
        print(f"{label:30}{old:>10.1f}{new:>10.1f}{_change(old, new):>9}")
    per_transfer = {
        name: round((after["bytes"][name] - before["bytes"][name]) / max(grow.ok, 1)) for name in before["bytes"]
    }
    for name, size in after["bytes"].items():
        print(f"{name} database: {size / 2**20:.1f} MB, {per_transfer[name]} bytes per transfer added")
    return {
        "grown": grown,
        "grow": grow.summary(cores()),
        "before": before,
        "after": after,
        "bytes_per_transfer": per_transfer,
        "failed": bool(grow.failures or before["post_failures"] or after["post_failures"]),
    }
