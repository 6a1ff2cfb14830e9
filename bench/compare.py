"""Scenario `baseline` (part of the default `make bench`): N transfers at concurrency C through mojaflow's client
API, and as many bare workflows (`bench/baseline.py`) of two kinds on the same Temporal server:

- **bare, fair**: our worker settings (unsandboxed, 200 activity slots), the same kinds of activity as ours for
  the three SDK calls: the two before the money step local activities, the money step an activity (`--bare-activities`:
  all three activities, as our workflow had them before its sent-request claims). The ratio is against it.
- **bare, sandboxed**: default sandbox and worker options: the plainest Temporal worker, a second reference line.

W warm-up transfers of each kind, then R rounds of alternating order (ours, fair, sandboxed; sandboxed, fair,
ours; ...) so a drift in the machine's load or in Temporal's database weighs on every kind alike.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import api_client, running_stack
from bench.phase import Phase, cores, run_phase
from bench.transfers import bare_transfer, history_shape, mojaflow_transfer, mojaflow_workflow_id

__all__ = ["run"]

# kind -> (label, worker process)
KINDS = {
    "mojaflow": ("mojaflow (client API)", "worker"),
    "bare-fair": ("bare, fair", "bare-fair-worker"),
    "bare-sandboxed": ("bare, sandboxed", "bare-worker"),
}
COLUMNS = ("temporal", "worker", "api", "sdk-sim", "cbs-sim", "driver")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    print(f"baseline: {args.transfers} transfers of each kind at concurrency {args.concurrency}, warm-up "
          f"{args.warmup}, {args.rounds} rounds")  # fmt: skip
    async with running_stack(args, "baseline") as (stack, client), api_client(stack, args.concurrency) as http:
        keys: list[str] = []
        ids: dict[str, list[str]] = {"bare-fair": [], "bare-sandboxed": []}
        local = not args.bare_activities
        ones = {
            "mojaflow": mojaflow_transfer(http, stack.api_url, keys),
            "bare-fair": bare_transfer(client, "bench-bare-fair", ids["bare-fair"], local_before_money=local),
            "bare-sandboxed": bare_transfer(client, "bench-bare", ids["bare-sandboxed"], local_before_money=local),
        }
        phases = {kind: Phase(kind, args.transfers, args.concurrency) for kind in KINDS}
        for kind, one in ones.items():
            if args.warmup:
                print(f"  warm-up {kind}: {args.warmup} transfers …", flush=True)
                warm = await run_phase(Phase(kind, args.warmup, args.concurrency), args.warmup, one, stack.procs, [])
                if warm.failures:
                    print(f"    {len(warm.failures)} warm-up failures, e.g. {warm.failures[0]}")
        counts = [args.transfers // args.rounds + (i < args.transfers % args.rounds) for i in range(args.rounds)]
        for index, count in enumerate(counts):
            for kind in list(KINDS) if index % 2 == 0 else list(reversed(KINDS)):
                print(f"  round {index + 1}/{args.rounds}, {kind}: {count} transfers …", flush=True)
                await run_phase(phases[kind], count, ones[kind], stack.procs, [KINDS[kind][1]])
        shapes = {"mojaflow": await history_shape(client, mojaflow_workflow_id(keys[-1]))}
        shapes |= {kind: await history_shape(client, workflow_ids[-1]) for kind, workflow_ids in ids.items()}
    return report(phases, shapes)


def _cpu(phase: Phase, kind: str) -> list[float]:
    """CPU ms per transfer in the table's columns; our idle API is no part of a bare transfer's cost."""
    worker = KINDS[kind][1]
    return [
        0.0 if (name == "api" and kind != "mojaflow") else phase.per_transfer(worker if name == "worker" else name)
        for name in COLUMNS
    ]


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def report(phases: dict[str, Phase], shapes: dict[str, Any]) -> dict[str, Any]:
    n = cores()
    head = (
        f"{'':24}{'ok':>5}{'fail':>5}{'tx/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}  | CPU ms per transfer:"
        + "".join(f"{c:>9}" for c in ("server", "worker", "api", "sdk-sim", "cbs-sim", "driver", "total"))
    )
    print()
    for phase in phases.values():
        for failure in phase.failures[:10]:
            print(f"  {phase.name} failure: {failure}")
    print(head)
    print("-" * len(head))
    totals: dict[str, dict[str, float]] = {}
    for kind, phase in phases.items():
        cpu = _cpu(phase, kind)
        totals[kind] = {"server": cpu[0], "worker": cpu[1], "own": cpu[0] + cpu[1] + cpu[2], "total": sum(cpu)}
        print(
            f"{KINDS[kind][0]:24}{phase.ok:>5}{len(phase.failures):>5}{phase.throughput:>8.1f}"
            f"{phase.percentile(0.5):>8.0f}{phase.percentile(0.95):>8.0f}{phase.percentile(0.99):>8.0f}  | "
            + " " * 20
            + "".join(f"{value:>9.1f}" for value in cpu)
            + f"{sum(cpu):>9.1f}"
        )
    print()
    for kind, shape in shapes.items():
        by_type = ", ".join(f"{name} {count}" for name, count in shape["by_type"].items())
        print(f"history of one {kind} transfer: {shape['events']} events ({by_type})")
    for kind, phase in phases.items():
        groups = next(iter(phase.threads_cpu_ms.values()), {})
        text = ", ".join(f"{group} {ms / phase.n:.1f}" for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]))
        print(f"{kind} worker CPU ms per transfer by thread: {text}")
    for phase in phases.values():
        share = phase.background_share(n)
        if share > 0.05:
            print(f"warning: other processes used {share:.0%} of the machine's CPU during the {phase.name} phase; "
                  "throughput and latency are not reliable, CPU per transfer less affected")  # fmt: skip
    ours = phases["mojaflow"]
    ratios = {
        against: {
            "throughput": _ratio(ours.throughput, phases[against].throughput),
            "p50_latency": _ratio(ours.percentile(0.5), phases[against].percentile(0.5)),
            **{f"cpu_{key}": _ratio(totals["mojaflow"][key], totals[against][key]) for key in ("server", "worker")},
            "cpu_total": _ratio(totals["mojaflow"]["total"], totals[against]["total"]),
        }
        for against in ("bare-fair", "bare-sandboxed")
    }
    own = totals["mojaflow"]["own"]
    print(f"mojaflow's own processes (server + worker + API): {own:.1f} ms CPU per transfer (issue 12's budget: 60)")
    for against, ratio in ratios.items():
        print(f"ratio (mojaflow / {against}) CPU per transfer: server {ratio['cpu_server']:.2f}, "
              f"worker {ratio['cpu_worker']:.2f}, total {ratio['cpu_total']:.2f}; "
              f"throughput {ratio['throughput']:.2f}")  # fmt: skip
    print(f"ratio (mojaflow / bare, fair) throughput: {ratios['bare-fair']['throughput']:.2f} (target >= 0.9)")
    return {
        "phases": {kind: phase.summary(n) for kind, phase in phases.items()},
        "cpu_ms_per_transfer_totals": totals,
        "history": shapes,
        "ratio": ratios,
        "failed": any(phase.failures for phase in phases.values()),
    }
