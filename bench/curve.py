"""Scenario `curve`: how throughput, latency and CPU per transfer move with the load. Transfers through our client
API (answered once COMPLETED) at each concurrency of `--levels` (1, 5, 20, 50, 100), max(30, 4 × level) of them
per level so each level runs several waves, on one stack after `--warmup` transfers. Per level: throughput,
p50/p99, and CPU ms per transfer of each process.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import api_client, running_stack
from bench.phase import Phase, cores, run_phase
from bench.transfers import mojaflow_transfer

__all__ = ["run"]

PROCESSES = ("temporal", "worker", "api", "sdk-sim", "cbs-sim", "driver")


def transfers_at(level: int) -> int:
    return max(30, 4 * level)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(level) for level in args.levels.split(",")]
    print(f"curve: concurrency {levels}, {[transfers_at(level) for level in levels]} transfers")
    async with (
        running_stack(args, "curve", bare_workers=()) as (stack, _),
        api_client(stack, max(levels)) as http,
    ):
        one = mojaflow_transfer(http, stack.api_url, [])
        if args.warmup:
            await run_phase(Phase("warm-up", args.warmup, min(args.warmup, 20)), args.warmup, one, {}, [])
        phases = []
        for level in levels:
            count = transfers_at(level)
            print(f"  concurrency {level}: {count} transfers …", flush=True)
            phases.append(await run_phase(Phase(f"c{level}", count, level), count, one, stack.procs, []))
    return report(phases)


def report(phases: list[Phase]) -> dict[str, Any]:
    n = cores()
    print()
    head = (f"{'concurrency':>11}{'ok':>5}{'tx/s':>7}{'p50 ms':>8}{'p99 ms':>8}  | CPU ms per transfer:"
            + "".join(f"{name:>9}" for name in (*PROCESSES, "ours")) + f"{'others':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for phase in phases:
        for failure in phase.failures[:5]:
            print(f"  {phase.name} failure: {failure}")
        cpu = [phase.per_transfer(name) for name in PROCESSES]
        print(f"{phase.concurrency:>11}{phase.ok:>5}{phase.throughput:>7.1f}{phase.percentile(0.5):>8.0f}"
              f"{phase.percentile(0.99):>8.0f}  | {'':19}" + "".join(f"{ms:>9.1f}" for ms in cpu)
              + f"{sum(cpu[:3]):>9.1f}{phase.background_share(n):>8.0%}")  # fmt: skip
    print("(ours: server + worker + API, issue 12's budget 60 ms; others: CPU share of the machine used meanwhile by "
          "other processes: the noise)")  # fmt: skip
    return {"levels": [phase.summary(n) for phase in phases], "failed": any(p.failures for p in phases)}
