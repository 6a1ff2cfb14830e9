"""Scenario `latency` (part of the default `make bench`): what mojaflow adds to a transfer's time when nothing
else runs. At concurrency 1, `--sequential` transfers of each kind, in two rounds of alternating order:

- **direct**: the three SDK calls by a plain httpx client in sequence against the SDK simulator, no Temporal:
  the floor;
- **bare, fair**: the same calls as the fair bare workflow (`bench/baseline.py --fair`): what Temporal adds;
- **bare, activities**: the same, its two calls before the money step as activities, not local: two workflow tasks
  more (what a workflow task costs in time);
- **mojaflow**: `POST /transfers` answered once COMPLETED: CBS lookup, hold and commit, every state saved.

Added latency = p50 of a kind − p50 of direct (issue 12's target for mojaflow: ≤ 60 ms). Then one more transfer
of each workflow kind, alone, broken down by phase from its history (`bench/breakdown.py`): mojaflow's, and the
fair bare's (what Temporal alone spends on three activities, for comparison).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx

from bench.breakdown import Step, breakdown, by_kind
from bench.common import api_client, running_stack
from bench.phase import Phase, run_phase
from bench.transfers import (
    bare_transfer,
    direct_transfer,
    mojaflow_transfer,
    mojaflow_workflow_id,
    money_movement_headers,
    transfer_body,
)

__all__ = ["run"]

KINDS = ("direct", "bare-fair", "bare-activities", "mojaflow")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.sequential
    print(f"latency: {n} transfers of each kind one at a time, warm-up 5 each")
    options: dict[str, Any] = {"bare_workers": ("bare-fair-worker",)}
    async with (
        running_stack(args, "latency", **options) as (stack, client),
        api_client(stack, 1) as http,
        httpx.AsyncClient(base_url=stack.sdk_url, timeout=30) as sdk,
    ):
        keys: list[str] = []
        ones = {
            "direct": direct_transfer(sdk),
            "bare-fair": bare_transfer(client, "bench-bare-fair", []),
            "bare-activities": bare_transfer(client, "bench-bare-fair", [], local_before_money=False),
            "mojaflow": mojaflow_transfer(http, stack.api_url, keys),
        }
        phases = {kind: Phase(kind, n, 1) for kind in KINDS}
        for kind in KINDS:
            await run_phase(Phase(kind, 5, 1), 5, ones[kind], {}, [])
        for index, count in enumerate((n - n // 2, n // 2)):
            for kind in KINDS if index == 0 else tuple(reversed(KINDS)):
                print(f"  round {index + 1}/2, {kind}: {count} transfers …", flush=True)
                await run_phase(phases[kind], count, ones[kind], stack.procs, [])
        sent_at, key = time.time(), money_movement_headers()
        answer = await http.post(f"{stack.api_url}/transfers", headers=key, json=transfer_body())
        ours = (sent_at, time.time())
        answer.raise_for_status()
        steps = {"mojaflow": await breakdown(client, mojaflow_workflow_id(key["idempotent_request_key"]), *ours)}
        bare_ids: list[str] = []
        sent_at = time.time()
        await bare_transfer(client, "bench-bare-fair", bare_ids)(0)
        steps["bare-fair"] = await breakdown(client, bare_ids[0], sent_at, time.time())
    return report(phases, steps)


def print_breakdown(kind: str, steps: list[Step]) -> None:
    first, last = steps[0].start_s, steps[-1].end_s
    print()
    print(f"one {kind} transfer, alone, by phase ({(last - first) * 1000:.1f} ms from request to answer):")
    for step in steps:
        print(f"  {(step.start_s - first) * 1000:>8.1f} ms  +{step.ms:>7.1f} ms  {step.label}")
    print(f"  the steps add up to {sum(step.ms for step in steps):.1f} ms; by phase:")
    for name, ms in sorted(by_kind(steps).items(), key=lambda kv: -kv[1]):
        print(f"    {ms:>7.1f} ms  {name}")


def report(phases: dict[str, Phase], steps: dict[str, list[Step]]) -> dict[str, Any]:
    floor = phases["direct"].percentile(0.5)
    print()
    print(f"{'at concurrency 1':22}{'ok':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'adds (p50)':>12}")
    for kind, phase in phases.items():
        for failure in phase.failures[:5]:
            print(f"  {kind} failure: {failure}")
        print(f"{kind:22}{phase.ok:>5}{phase.percentile(0.5):>9.1f}{phase.percentile(0.95):>9.1f}"
              f"{max(phase.latencies_ms):>9.1f}{phase.percentile(0.5) - floor:>12.1f}")  # fmt: skip
    for kind, its_steps in steps.items():
        print_breakdown(kind, its_steps)
    added = phases["mojaflow"].percentile(0.5) - floor
    print(f"mojaflow adds {added:.1f} ms (p50) over direct SDK calls at concurrency 1 (target <= 60 ms)")
    return {
        "phases": {kind: phase.summary(1) for kind, phase in phases.items()},
        "added_p50_ms": {kind: round(phase.percentile(0.5) - floor, 1) for kind, phase in phases.items()},
        "breakdown": {
            kind: [
                {
                    "label": s.label,
                    "kind": s.kind,
                    "at_ms": round((s.start_s - its[0].start_s) * 1000, 1),
                    "ms": round(s.ms, 1),
                }
                for s in its
            ]
            for kind, its in steps.items()
        },  # fmt: skip
        "breakdown_by_phase_ms": {kind: by_kind(its) for kind, its in steps.items()},
        "failed": any(phase.failures for phase in phases.values()),
    }
