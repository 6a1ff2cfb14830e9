"""One measured phase of a bench run: `count` calls of `one(i)`, `concurrency` at a time; wall time, each call's
latency, and the CPU each process of the stack used meanwhile (psutil user + system, children included).

    phase = await run_phase(Phase("mojaflow", 200, 20), 200, one, stack.procs, ["worker"])
    phase.throughput, phase.percentile(0.5), phase.per_transfer("temporal")

A phase can be run several times (rounds): wall time, latencies and CPU add up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.stack import Proc

__all__ = ["Phase", "cores", "loadavg", "percentile", "run_phase"]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: every figure is recorded with the machine's load beside it."""
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Phase:
    name: str
    n: int
    concurrency: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per process, whole phase
    threads_cpu_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # worker threads, whole phase

    @property
    def ok(self) -> int:
        return self.n - len(self.failures)

    @property
    def throughput(self) -> float:
        return self.n / self.wall_s if self.wall_s else 0.0

    def per_transfer(self, process: str) -> float:
        return self.cpu_ms.get(process, 0.0) / self.n

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def background_share(self, cores: int) -> float:
        """Share of the machine's CPU used by processes other than this bench's during the phase."""
        ours = sum(ms for name, ms in self.cpu_ms.items() if name not in ("machine", "iowait"))
        capacity = self.wall_s * cores * 1000
        return max(self.cpu_ms.get("machine", 0.0) - ours, 0.0) / capacity if capacity else 0.0

    def summary(self, cores: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "transfers": self.n,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "failed": len(self.failures),
            "failures": self.failures[:20],
            "wall_s": round(self.wall_s, 3),
            "throughput_per_s": round(self.throughput, 2),
            "latency_ms": {f"p{int(q * 100)}": round(self.percentile(q), 1) for q in (0.5, 0.95, 0.99)}
            | {"max": round(max(self.latencies_ms, default=float("nan")), 1)},
            "cpu_ms_per_transfer": {
                name: round(ms / self.n, 2) for name, ms in self.cpu_ms.items() if name not in ("machine", "iowait")
            },
            "machine_background_cpu_share": round(self.background_share(cores), 3),
            "machine_iowait_share": round(self.cpu_ms.get("iowait", 0.0) / (self.wall_s * cores * 1000 or 1), 3),
            "worker_threads_cpu_ms_per_transfer": {
                proc: {group: round(ms / self.n, 2) for group, ms in groups.items()}
                for proc, groups in self.threads_cpu_ms.items()
            },
        }


def machine_busy_s() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine so far, all cores."""
    times = psutil.cpu_times()
    iowait = getattr(times, "iowait", 0.0)
    return sum(times) - times.idle - iowait, iowait


async def run_phase(
    phase: Phase,
    count: int,
    one: Callable[[int], Awaitable[str | None]],
    procs: dict[str, Proc],
    thread_procs: list[str],
) -> Phase:
    """Run `one(i)` `count` times, `concurrency` at a time, adding wall time, latencies and CPU to `phase`.
    `one` returns None on success, else why not."""
    me = psutil.Process()

    def snapshot() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        cpu = {name: proc.cpu_s() for name, proc in procs.items()}
        times = me.cpu_times()
        cpu["driver"] = times.user + times.system
        cpu["machine"], cpu["iowait"] = machine_busy_s()
        return cpu, {name: procs[name].thread_cpu_s() for name in thread_procs}

    next_index = 0

    async def runner() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                failure = await one(index)
            except Exception as error:  # noqa: BLE001 - counted and printed, never hidden
                failure = f"{type(error).__name__}: {error}"[:300]
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            if failure is not None:
                phase.failures.append(failure)

    cpu_before, threads_before = snapshot()
    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(min(phase.concurrency, count))))
    phase.wall_s += time.perf_counter() - started
    cpu_after, threads_after = snapshot()
    for name in cpu_after:
        phase.cpu_ms[name] = phase.cpu_ms.get(name, 0.0) + (cpu_after[name] - cpu_before[name]) * 1000
    for name in thread_procs:
        groups = phase.threads_cpu_ms.setdefault(name, {})
        for group, seconds in threads_after[name].items():
            groups[group] = groups.get(group, 0.0) + (seconds - threads_before[name].get(group, 0.0)) * 1000
    return phase
