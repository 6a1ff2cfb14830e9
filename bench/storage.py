"""Scenario `storage`: the Temporal dev server's SQLite settings, measured side by side, so the README can say why
`MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS` defaults to what it does:

- `server default`: no `--sqlite-pragma` at all (the dev server's own choice);
- `wal+full`: `journal_mode=wal`, `synchronous=full` (mojaflow's default: every commit synced, durable across an
  OS crash or power cut);
- `wal+normal`: `journal_mode=wal`, `synchronous=normal` (the log synced at checkpoints only: a power cut can lose
  the last commits, e.g. the record that the money step was sent);
- `wal+full, reads at will`: mojaflow's pragmas with the transfer queue read up to 1000 times a second
  (`LOW_LATENCY_DYNAMIC_CONFIG`, mojaflow/temporal.py: lower latency alone, fewer transfers/s under load);
- any `--pragma-set LABEL=P1,P2` given.

One stack per setting, all started first; then rounds of alternating order (A, B, C; C, B, A), each N/2 transfers
at concurrency C through our client API plus `--sequential` transfers one at a time (latency alone), so a drift in
the machine's load weighs on every setting alike. Per setting: throughput, p50/p99, p50 alone, server CPU and the
CPU of all our processes per transfer, and the share of the run the machine spent waiting for the disk.
"""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import AsyncExitStack
from typing import Any

from bench.common import api_client, running_stack
from bench.phase import Phase, cores, run_phase
from bench.transfers import mojaflow_transfer
from mojaflow.temporal import LOW_LATENCY_DYNAMIC_CONFIG

__all__ = ["run"]

WAL_FULL = ["journal_mode=wal", "synchronous=full"]
# label -> (SQLite pragmas, dynamic config; None: MOJAFLOW_TEMPORAL_DYNAMIC_CONFIG's)
Config = tuple[list[str], list[str] | None]
CONFIGS: dict[str, Config] = {
    "server default": ([], None),
    "wal+full": (WAL_FULL, None),
    "wal+normal": (["journal_mode=wal", "synchronous=normal"], None),
    "wal+full, reads at will": (WAL_FULL, list(LOW_LATENCY_DYNAMIC_CONFIG)),
}
OURS = ("temporal", "worker", "api")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configs = dict(CONFIGS)
    for extra in args.pragma_set or []:
        label, _, pragmas = extra.partition("=")
        configs[label] = ([p for p in pragmas.split(",") if p], None)
    print(f"storage: {', '.join(configs)}; {args.transfers} transfers each at concurrency {args.concurrency}, "
          f"{args.sequential} one at a time")  # fmt: skip
    async with AsyncExitStack() as running:
        stacks = {}
        for label, (pragmas, dynamic_config) in configs.items():
            name = "storage-" + "".join(c if c.isalnum() or c in "+-" else "-" for c in label)
            stack, _ = await running.enter_async_context(
                running_stack(args, name, pragmas=pragmas, dynamic_config=dynamic_config, bare_workers=())
            )
            http = await running.enter_async_context(api_client(stack, args.concurrency))
            stacks[label] = (stack, mojaflow_transfer(http, stack.api_url, []))
        loaded = {label: Phase(label, args.transfers, args.concurrency) for label in configs}
        alone = {label: Phase(label, args.sequential, 1) for label in configs}
        for label, (_, one) in stacks.items():
            print(f"  warm-up {label}: {args.warmup} transfers …", flush=True)
            await run_phase(Phase(label, args.warmup, args.concurrency), args.warmup, one, {}, [])
        halves = (args.transfers - args.transfers // 2, args.transfers // 2)
        singles = (args.sequential - args.sequential // 2, args.sequential // 2)
        for index in (0, 1):
            for label in list(configs) if index == 0 else list(reversed(configs)):
                stack, one = stacks[label]
                print(f"  round {index + 1}/2, {label}: {halves[index]} + {singles[index]} transfers …", flush=True)
                await run_phase(loaded[label], halves[index], one, stack.procs, [])
                await run_phase(alone[label], singles[index], one, {}, [])
        journal = {label: _journal_mode(stack) for label, (stack, _) in stacks.items()}
    return report(configs, loaded, alone, journal)


def _journal_mode(stack: Any) -> str:
    """The journal mode the server's file is in (persistent for WAL); `synchronous` is per connection."""
    try:
        with sqlite3.connect(f"file:{stack.data_dir / 'temporal.db'}?mode=ro", uri=True) as db:
            return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    except sqlite3.Error as error:
        return f"? ({error})"


def report(
    configs: dict[str, Config], loaded: dict[str, Phase], alone: dict[str, Phase], journal: dict[str, str]
) -> dict[str, Any]:
    n = cores()
    print()
    head = (f"{'setting':22}{'journal':>9}{'ok':>5}{'tx/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'alone p50':>11}"
            f"{'server ms/tx':>14}{'ours ms/tx':>12}{'iowait':>8}{'others':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    figures = {}
    for label, phase in loaded.items():
        for failure in (phase.failures + alone[label].failures)[:5]:
            print(f"  {label} failure: {failure}")
        ours = sum(phase.per_transfer(name) for name in OURS)
        iowait = phase.cpu_ms.get("iowait", 0.0) / (phase.wall_s * n * 1000 or 1)
        print(f"{label:22}{journal[label]:>9}{phase.ok:>5}{phase.throughput:>7.1f}{phase.percentile(0.5):>8.0f}"
              f"{phase.percentile(0.99):>8.0f}{alone[label].percentile(0.5):>11.0f}"
              f"{phase.per_transfer('temporal'):>14.1f}{ours:>12.1f}{iowait:>8.0%}"
              f"{phase.background_share(n):>8.0%}")  # fmt: skip
        figures[label] = {
            "pragmas": configs[label][0],
            "dynamic_config": configs[label][1],
            "journal_mode": journal[label],
            "loaded": phase.summary(n),
            "alone": alone[label].summary(1),
            "cpu_ms_per_transfer_ours": round(ours, 2),
        }
    print(
        "(ours: server + worker + API; others: CPU share of the machine used meanwhile by processes outside the "
        "measured stack, the idle stacks of the other settings among them: the noise)"
    )
    return {"settings": figures, "failed": any(p.failures for p in (*loaded.values(), *alone.values()))}
