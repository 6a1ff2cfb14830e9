"""Scenario `waiting`: transfers parked in WAITING_FOR_QUOTE_ACCEPTANCE, as when the CBS decides on each quote
and takes its time. Our API and worker run with `MOJAFLOW_AUTO_ACCEPT_QUOTE=false` (the bank decides),
`MOJAFLOW_ACCEPTANCE_TIMEOUT_S` = one day (none expires while the bench runs) and
`MOJAFLOW_ALLOW_CALLER_AUTO_ACCEPT=true`, so that new transfers sent with `autoAcceptQuote: true` run through.

1. N transfers at concurrency C with `autoAcceptQuote: true` on the empty system: throughput (the reference).
2. `--waiting N` transfers without it, 20 at a time, each answered once it waits for the quote's acceptance.
3. 5 s later: RSS of the worker and the server (with their children), and their CPU over 10 s of waiting.
4. N transfers again with `autoAcceptQuote: true`, while the others wait: throughput, against 1. (issue 12: ≥ 0.8).
   Steps 1 and 4 cannot alternate (the parked transfers stay), so a change in the machine's load between them
   shows in the ratio: read it with the others' share of the machine, printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import api_client, running_stack
from bench.phase import Phase, cores, run_phase
from bench.transfers import mojaflow_transfer

__all__ = ["run"]

SETTINGS = {
    "MOJAFLOW_AUTO_ACCEPT_QUOTE": "false",
    "MOJAFLOW_ACCEPTANCE_TIMEOUT_S": "86400",
    "MOJAFLOW_ALLOW_CALLER_AUTO_ACCEPT": "true",
}
PARKING_CONCURRENCY = 20
IDLE_WINDOW_S = 10.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    print(f"waiting: {args.waiting} transfers parked; {args.transfers} new ones at concurrency {args.concurrency} "
          "before and while they wait")  # fmt: skip
    async with (
        running_stack(args, "waiting", extra_env=SETTINGS, bare_workers=()) as (stack, _),
        api_client(stack, max(args.concurrency, PARKING_CONCURRENCY)) as http,
    ):
        through = mojaflow_transfer(http, stack.api_url, [], autoAcceptQuote=True)
        parks = mojaflow_transfer(http, stack.api_url, [], state="WAITING_FOR_QUOTE_ACCEPTANCE")
        measured = {name: stack.procs[name] for name in ("temporal", "worker")}
        await run_phase(Phase("warm-up", args.warmup, args.concurrency), args.warmup, through, {}, [])
        rss_empty = {name: proc.rss_bytes() for name, proc in measured.items()}
        print(f"  {args.transfers} transfers on the empty system …", flush=True)
        empty = await run_phase(Phase("empty", args.transfers, args.concurrency), args.transfers, through,
                                stack.procs, [])  # fmt: skip
        print(f"  parking {args.waiting} transfers …", flush=True)
        parking = await run_phase(Phase("parking", args.waiting, PARKING_CONCURRENCY), args.waiting, parks,
                                  stack.procs, [])  # fmt: skip
        await asyncio.sleep(5)
        rss = {name: proc.rss_bytes() for name, proc in measured.items()}
        before = {name: proc.cpu_s() for name, proc in measured.items()}
        started = time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW_S)
        window = time.perf_counter() - started
        idle = {name: (proc.cpu_s() - before[name]) / window for name, proc in measured.items()}
        print(f"  {args.transfers} transfers while {args.waiting} wait …", flush=True)
        loaded = await run_phase(Phase("while waiting", args.transfers, args.concurrency), args.transfers, through,
                                 stack.procs, [])  # fmt: skip
    return report(args.waiting, empty, parking, loaded, rss_empty, rss, idle)


def report(
    waiting: int,
    empty: Phase,
    parking: Phase,
    loaded: Phase,
    rss_empty: dict[str, int],
    rss: dict[str, int],
    idle: dict[str, float],
) -> dict[str, Any]:
    n = cores()
    mb = {name: round(value / 2**20) for name, value in rss.items()}
    mb_empty = {name: round(value / 2**20) for name, value in rss_empty.items()}
    ratio = loaded.throughput / empty.throughput if empty.throughput else float("nan")
    print()
    for phase in (empty, parking, loaded):
        for failure in phase.failures[:5]:
            print(f"  {phase.name} failure: {failure}")
    print(f"parked {parking.ok} of {waiting} in {parking.wall_s:.0f} s ({parking.throughput:.1f}/s)")
    print(f"RSS with them waiting: server {mb['temporal']} MB, worker {mb['worker']} MB, together "
          f"{sum(mb.values())} MB (target <= 1024; empty system: {sum(mb_empty.values())} MB)")  # fmt: skip
    print(f"CPU while they wait ({IDLE_WINDOW_S:.0f} s): server {idle['temporal']:.1%}, worker {idle['worker']:.1%} "
          "of one core")  # fmt: skip
    for phase in (empty, loaded):
        print(f"new transfers {phase.name}: {phase.throughput:.1f}/s, p50 {phase.percentile(0.5):.0f} ms, "
              f"others used {phase.background_share(n):.0%} of the machine")  # fmt: skip
    print(f"ratio (while {waiting} wait / empty) throughput: {ratio:.2f} (target >= 0.8)")
    return {
        "waiting": waiting,
        "phases": {phase.name: phase.summary(n) for phase in (empty, parking, loaded)},
        "rss_mb": mb | {"total": sum(mb.values())},
        "rss_mb_empty": mb_empty | {"total": sum(mb_empty.values())},
        "idle_cpu_share_of_one_core": {name: round(share, 4) for name, share in idle.items()},
        "throughput_ratio": round(ratio, 3),
        "failed": any(phase.failures for phase in (empty, parking, loaded)),
    }
