"""Scenario `worker-options`: the transfers' worker's Temporal options (`MOJAFLOW_WORKER_*`, worker.py
`transfer_worker_options`), one axis at a time against today's defaults. Each option set gets a fresh stack (the
bench's usual: dev server, simulators, our API and worker, no bare workers) with its variables for our API and
worker, `--warmup` transfers, then N transfers at concurrency C through our client API (the baseline scenario's
mojaflow phase). Per set: throughput, p50/p95/p99, CPU ms per transfer of the server, the worker, the API and their
total, and the options the worker said it runs with.

The sets run one after the other, each on an empty server; `default` runs first and last (`default, again`): the
difference between those two is the machine's drift over the run, which a difference between sets must exceed.
`--option-set LABEL=K1=V1;K2=V2` (repeatable; K a setting's variable, `MOJAFLOW_` optional) replaces the list.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import ValidationError

from bench.common import api_client, running_stack
from bench.mojaflow_stack import Stack
from bench.phase import Phase, cores, run_phase
from bench.transfers import mojaflow_transfer
from mojaflow.settings import Settings

__all__ = ["OPTION_SETS", "option_sets", "run"]

_W = "MOJAFLOW_WORKER_"
# label -> the variables our API and worker get on top of the stack's. A limit at or above the transfers in flight
# (-c) cannot bind: at -c 20, the sets of 20 and 100 show only whether the smaller setting costs nothing.
OPTION_SETS: dict[str, dict[str, str]] = {
    "default": {},
    "workflow tasks 5": {f"{_W}MAX_CONCURRENT_WORKFLOW_TASKS": "5"},
    "workflow tasks 20": {f"{_W}MAX_CONCURRENT_WORKFLOW_TASKS": "20"},
    "local activities 20": {f"{_W}MAX_CONCURRENT_LOCAL_ACTIVITIES": "20"},
    "cached workflows 100": {f"{_W}MAX_CACHED_WORKFLOWS": "100"},
    "workflow pollers 2": {f"{_W}WORKFLOW_TASK_POLLERS": "2"},
    "workflow pollers 10": {f"{_W}WORKFLOW_TASK_POLLERS": "10"},
    "activity pollers 2": {f"{_W}ACTIVITY_TASK_POLLERS": "2"},
    "activity pollers 10": {f"{_W}ACTIVITY_TASK_POLLERS": "10"},
    "default, again": {},
}
COLUMNS = ("temporal", "worker", "api")  # the table's CPU columns: server, worker, API


def option_sets(specs: list[str] | None) -> dict[str, dict[str, str]]:
    """`LABEL=K1=V1;K2=V2` each (none: the built-in list), checked against the settings before any stack starts:
    a misspelt variable would otherwise measure the default under another name. ValueError says what is wrong."""
    if not specs:
        return {label: _checked(label, env) for label, env in OPTION_SETS.items()}
    sets: dict[str, dict[str, str]] = {}
    for spec in specs:
        label, _, assignments = spec.partition("=")
        label = label.strip()
        if not label or label in sets:
            raise ValueError(f"--option-set {spec!r}: LABEL=K1=V1;K2=V2, each label once")
        env: dict[str, str] = {}
        for assignment in (item.strip() for item in assignments.split(";")):
            if assignment:
                key, _, value = assignment.partition("=")
                name = key.strip().upper()
                env[name if name.startswith("MOJAFLOW_") else f"MOJAFLOW_{name}"] = value.strip()
        sets[label] = _checked(label, env)
    return sets


def _checked(label: str, env: dict[str, str]) -> dict[str, str]:
    fields = {name.removeprefix("MOJAFLOW_").lower(): value for name, value in env.items()}
    unknown = [f"MOJAFLOW_{field.upper()}" for field in fields if field not in Settings.model_fields]
    if unknown:
        raise ValueError(f"--option-set {label!r}: no such setting {', '.join(unknown)}")
    try:
        Settings.model_validate(fields)
    except ValidationError as error:
        raise ValueError(f"--option-set {label!r}: {error}") from None
    return env


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sets = option_sets(args.option_set)
    print(f"worker-options: {', '.join(sets)}; each on a fresh stack, {args.warmup} warm-up and {args.transfers} "
          f"transfers at concurrency {args.concurrency}")  # fmt: skip
    phases: dict[str, Phase] = {}
    said: dict[str, str] = {}
    for index, (label, env) in enumerate(sets.items()):
        print(f"[{index + 1}/{len(sets)}] {label}: {_text(env)}", flush=True)
        name = "worker-options-" + "".join(c if c.isalnum() else "-" for c in label)
        async with (
            running_stack(args, name, bare_workers=(), extra_env=env) as (stack, _),
            api_client(stack, args.concurrency) as http,
        ):
            one = mojaflow_transfer(http, stack.api_url, [])
            if args.warmup:
                warm = await run_phase(Phase("warm-up", args.warmup, args.concurrency), args.warmup, one, {}, [])
                if warm.failures:
                    print(f"  {len(warm.failures)} warm-up failures, e.g. {warm.failures[0]}")
            print(f"  {args.transfers} transfers …", flush=True)
            phase = Phase(label, args.transfers, args.concurrency)
            phases[label] = await run_phase(phase, args.transfers, one, stack.procs, ["worker"])
            said[label] = _worker_said(stack)
            print(f"  worker: {said[label]}", flush=True)
    return report(sets, phases, said)


def _text(env: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in env.items()) or "(today's defaults)"


def _worker_said(stack: Stack) -> str:
    """The options the worker process logged at start (worker.py): proof the set reached it."""
    path = stack.data_dir / "worker.log"
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if "transfers' worker:" in line:
            try:
                return str(json.loads(line).get("event", line))
            except ValueError:
                return line.strip()
    return "? (no start line in worker.log)"


def report(sets: dict[str, dict[str, str]], phases: dict[str, Phase], said: dict[str, str]) -> dict[str, Any]:
    n = cores()
    print()
    for phase in phases.values():
        for failure in phase.failures[:5]:
            print(f"  {phase.name} failure: {failure}")
    width = max(24, *(len(label) + 2 for label in phases))
    head = (f"{'option set':{width}}{'ok':>5}{'fail':>5}{'tx/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
            f"  | CPU ms per transfer:{'server':>9}{'worker':>9}{'api':>9}{'total':>9}{'others':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    figures = {}
    for label, phase in phases.items():
        cpu = [phase.per_transfer(name) for name in COLUMNS]
        print(f"{label:{width}}{phase.ok:>5}{len(phase.failures):>5}{phase.throughput:>7.1f}"
              f"{phase.percentile(0.5):>8.0f}{phase.percentile(0.95):>8.0f}{phase.percentile(0.99):>8.0f}  | "
              f"{'':20}" + "".join(f"{ms:>9.1f}" for ms in cpu) + f"{sum(cpu):>9.1f}"
              f"{phase.background_share(n):>8.0%}")  # fmt: skip
        figures[label] = {
            "env": sets[label],
            "worker_said": said[label],
            "phase": phase.summary(n),
            "cpu_ms_per_transfer_ours": round(sum(cpu), 2),
        }
    print("(total: server + worker + API, issue 12's budget 60 ms; others: CPU share of the machine used meanwhile by "
          "other processes: the noise. Compare a set with `default` and `default, again`: their difference is the "
          "drift)")  # fmt: skip
    return {"option_sets": figures, "failed": any(phase.failures for phase in phases.values())}
