"""`make bench BENCH_ARGS=--webhooks`: what webhooks cost a loaded mojaflow, on isolated stacks started here.

    .venv/bin/python bench/bench.py --webhooks [-n 100] [-c 20] [--warmup 20] [--parked 10000] [--keep]

1. Transfers with and without webhooks, in the same run, on `bench/bench.py`'s stack (Temporal dev server, SDK
   and CBS simulators, our API and worker) plus the webhook receiver simulator (`MOJAFLOW_WEBHOOK_ALLOWED_HOSTS`
   = 127.0.0.1). One subscription of the bench's client to the receiver, every state change; it is disabled for
   the phases without (PATCH `enabled`), so both kinds run on the same processes and database. Two rounds
   (without, with; with, without), N/2 transfers at concurrency C each. A phase with webhooks ends when every
   transfer is COMPLETED (its throughput) and then every delivery workflow has ended (its CPU). CPU per delivery =
   (server + worker CPU of the phases with webhooks − that of the same number of transfers without) / deliveries.
   First-attempt latency = the receiver's arrival time − the event's `occurredAt` (the state change's save).
2. First-attempt deliveries/s alone: `bench/webhooks.py` (its own stack; 600 deliveries of 100 made-up transfers,
   50 saving at once, their states 25 ms apart, through the real outbox).
3. `--parked N` (0: skipped): N deliveries (six per made-up transfer, as the outbox emits them) whose first attempt
   gets a 500 from the receiver, parked until the next
   hourly attempt: server + worker RSS, and their CPU over 30 s of that wait (share of the machine's cores).

Stops every process it started, by PID, at the end and on Ctrl-C (each stack in its `finally`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench import webhooks
from bench.common import RESULTS, ROOT
from bench.mojaflow_stack import Stack
from bench.phase import Phase, run_phase
from bench.stack import Proc, free_port, http_ok
from bench.transfers import mojaflow_transfer

WEBHOOK_QUEUE = "bench-webhooks"
IDLE_WINDOW_S = 30.0
# Transfers saving their states at once while parking: the parked figures are measured once they wait, so this only
# has to fill the system without drowning the shared SQLite file in writers.
PARKING_CONCURRENCY = 10


_DELIVERY_RUNS = "WorkflowType = 'WebhookDeliveryWorkflow'"


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as bench.py)."""
    values = sorted(values)
    if not values:
        return float("nan")
    rank = (len(values) - 1) * q
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (rank - low), 1)


async def _receiver_count(http: httpx.AsyncClient, url: str) -> int:
    return int((await http.get(f"{url}/_sim/events", params={"limit": 1})).json()["count"])


async def _deliveries_done(client: Client, http: httpx.AsyncClient, receiver_url: str, timeout_s: float = 300) -> None:
    """Until no delivery workflow runs and the receiver's count has not moved for 1 s (a save starts its
    deliveries right after its commit, so the last ones may start after the last transfer answered)."""
    deadline = time.monotonic() + timeout_s
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = await _receiver_count(http, receiver_url)
        if count != last:
            last, still_since = count, time.monotonic()
        running = await client.count_workflows(
            "WorkflowType = 'WebhookDeliveryWorkflow' AND ExecutionStatus = 'Running'"
        )
        if running.count == 0 and time.monotonic() - still_since >= 1.0:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"deliveries still running after {timeout_s:.0f} s")


def _lags(database: Path, events: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """Where each first attempt's latency went, from our database: the state's save (`occurredAt`) to its delivery
    marked dispatched (the dispatcher's linger and signal-with-start), to the attempt's time (the workflow task
    and its local activity starting), to the receiver's arrival (the POST)."""
    arrived = {event["eventId"]: datetime.fromisoformat(event["receivedAt"]) for event in events}
    query = """
        SELECT d.event_id, e.occurred_at, d.dispatched_at, a.at FROM webhook_deliveries d
        JOIN webhook_events e ON e.event_id = d.event_id
        JOIN webhook_attempts a ON a.delivery_id = d.delivery_id AND a.cycle = 1 AND a.attempt = 1
    """
    with sqlite3.connect(database) as connection:
        rows = connection.execute(query).fetchall()
    lags = []
    for event, occurred, dispatched, at in rows:
        if event in arrived and dispatched is not None:
            times = [_utc(value) for value in (occurred, dispatched, at)] + [arrived[event]]
            lags.append(tuple((b - a).total_seconds() * 1000 for a, b in zip(times, times[1:], strict=False)))
    return lags  # type: ignore[return-value]


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _latency_ms(event: dict[str, Any]) -> float:
    """From the state change's save (the event's `occurredAt`) to the receiver's arrival time."""
    arrived = datetime.fromisoformat(event["receivedAt"])
    return (arrived - datetime.fromisoformat(event["body"]["data"]["occurredAt"])).total_seconds() * 1000


async def _events(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    return await webhooks.received(http, url)


async def transfers_with_and_without(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-bench-wh-load-"))
    profile_dir = data_dir / "profiles" if getattr(args, "profile", False) else None
    if profile_dir:
        profile_dir.mkdir()
    stack = Stack(data_dir=data_dir, profile_dir=profile_dir, bare_workers=(), extra_env={
        "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "MOJAFLOW_WEBHOOK_TASK_QUEUE": WEBHOOK_QUEUE,
        "MOJAFLOW_SECRETS_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
    })  # fmt: skip
    print(f"webhook load: {args.transfers} transfers with and {args.transfers} without webhooks, concurrency "
          f"{args.concurrency}; data in {data_dir}")  # fmt: skip
    try:
        client = await stack.start()
        port = free_port()
        receiver_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "simulators.webhook_receiver", "--port", str(port),
                "--data-dir", str(data_dir / "receiver")]  # fmt: skip
        await stack.add(Proc("receiver", argv, log_path=data_dir / "receiver.log", cwd=str(ROOT),
                             ready=http_ok(f"{receiver_url}/health")))  # fmt: skip
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        async with httpx.AsyncClient(timeout=90, limits=limits, headers=auth) as http:
            made = await http.post(f"{stack.api_url}/webhooks/subscriptions", json={
                "url": f"{receiver_url}/hooks", "eventTypes": ["moneymovementservices.payment.status_updated"],
                "auth": {"type": "api_keys", "headers": {"X-Bench-Key": os.urandom(12).hex()}},
            })  # fmt: skip
            made.raise_for_status()
            subscription = f"{stack.api_url}/webhooks/subscriptions/{made.json()['subscriptionId']}"
            keys: list[str] = []
            one = mojaflow_transfer(http, stack.api_url, keys)
            measured = {name: stack.procs[name] for name in ("temporal", "worker", "api")}
            phases = {kind: Phase(kind, args.transfers, args.concurrency) for kind in ("without", "with")}
            cpu = {kind: dict.fromkeys(measured, 0.0) for kind in phases}
            latencies: list[float] = []
            by_state: dict[str, list[float]] = {}
            lags: list[tuple[float, float, float]] = []
            delivered = 0
            workflows = 0  # delivery workflows (runs) of the measured phases with webhooks

            async def phase(kind: str, count: int, into: Phase) -> None:
                nonlocal delivered, workflows
                (await http.patch(subscription, json={"enabled": kind == "with"})).raise_for_status()
                (await http.delete(f"{receiver_url}/_sim/events")).raise_for_status()
                runs_before = (await client.count_workflows(_DELIVERY_RUNS)).count
                before = {name: proc.cpu_s() for name, proc in measured.items()}
                await run_phase(into, count, one, {}, [])
                if kind == "with":
                    await _deliveries_done(client, http, receiver_url)
                for name, proc in measured.items():
                    cpu[kind][name] += proc.cpu_s() - before[name]
                if kind == "with" and into is phases["with"]:
                    events = await _events(http, receiver_url)
                    delivered += len(events)
                    workflows += (await client.count_workflows(_DELIVERY_RUNS)).count - runs_before
                    latencies.extend(_latency_ms(event) for event in events)
                    for event in events:
                        by_state.setdefault(event["body"]["data"]["currentState"], []).append(_latency_ms(event))
                    lags.extend(_lags(data_dir / "mojaflow" / "mojaflow.db", events))

            if args.warmup:
                for kind in phases:
                    print(f"  warm-up {kind} webhooks: {args.warmup} transfers …", flush=True)
                    await phase(kind, args.warmup, Phase(kind, args.warmup, args.concurrency))
            counts = [args.transfers // 2 + args.transfers % 2, args.transfers // 2]
            for index, count in enumerate(c for c in counts if c):
                for kind in ("without", "with") if index == 0 else ("with", "without"):
                    print(f"  round {index + 1}/2, {kind} webhooks: {count} transfers …", flush=True)
                    await phase(kind, count, phases[kind])
    finally:
        print("  stopping the stack …", flush=True)
        stack.stop()
        if profile_dir:
            print(f"profiles (cProfile; the figures are inflated by it): {profile_dir}")
        elif not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    n = args.transfers
    extra = {name: (cpu["with"][name] - cpu["without"][name]) * 1000 / max(delivered, 1) for name in measured}
    return {
        "transfers": n,
        "failures": {kind: p.failures[:10] for kind, p in phases.items()},
        "throughput_per_s": {kind: round(p.throughput, 2) for kind, p in phases.items()},
        "throughput_ratio": round(phases["with"].throughput / phases["without"].throughput, 2),
        "transfer_p50_ms": {kind: round(p.percentile(0.5)) for kind, p in phases.items()},
        "deliveries": delivered,
        "deliveries_per_transfer": round(delivered / n, 2),
        "deliveries_per_workflow": round(delivered / max(workflows, 1), 2),
        "cpu_ms_per_transfer": {
            kind: {name: round(s * 1000 / n, 1) for name, s in by.items()} for kind, by in cpu.items()
        },
        "cpu_ms_per_delivery": {name: round(ms, 2) for name, ms in extra.items()}
        | {"server_plus_worker": round(extra["temporal"] + extra["worker"], 2)},
        "first_attempt_latency_ms": {
            "p50": _percentile(latencies, 0.5),
            "p95": _percentile(latencies, 0.95),
            "max": round(max(latencies, default=float("nan")), 1),
        },  # fmt: skip
        "first_attempt_latency_by_state_ms": {
            state: {"n": len(values), "p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95)}
            for state, values in by_state.items()
        },
        "first_attempt_latency_parts_ms": {
            part: {q: _percentile([lag[i] for lag in lags], quantile) for q, quantile in (("p50", 0.5), ("p95", 0.95))}
            for i, part in enumerate(("dispatch", "to_attempt", "post"))
        },
    }


async def parked(count: int, concurrency: int, keep: bool) -> dict[str, Any]:
    """`count` deliveries whose first attempt gets a 500: RSS and idle CPU while they wait for the next hour."""
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-bench-wh-parked-"))
    stack = webhooks.Stack(data_dir)
    print(f"parked: {count} deliveries answered 500, {concurrency} transfers saving at once; data in {data_dir}")
    try:
        await stack.start()
        client = await stack.client()
        database = webhooks.Database(
            stack.settings.resolved_database_url, secrets=webhooks.load_secrets_ring(stack.settings)
        )
        await database.create_schema()
        request = webhooks.SubscriptionCreate.model_validate({
            "url": f"{stack.receiver_url}/hooks", "eventTypes": ["moneymovementservices.payment.status_updated"],
            "auth": {"type": "api_keys", "headers": {"X-Bench-Key": os.urandom(12).hex()}},
        })  # fmt: skip
        await webhooks.create_subscription(database, webhooks.CLIENT_KEY, request)
        outbox = webhooks.Outbox(database, client, stack.settings)
        transfers = webhooks.transfer_records(count // webhooks.EVENTS_PER_TRANSFER)
        measured = [stack.procs["temporal"], stack.procs["worker"]]
        async with httpx.AsyncClient(timeout=30) as http:
            (await http.put(f"{stack.receiver_url}/_sim/faults", json={"status": 500})).raise_for_status()
            started = time.perf_counter()
            first = await webhooks.run_phase(stack, outbox, http, transfers, concurrency, 0.025, until_closed=False)
            await outbox.aclose()
            await database.close()
            print(f"  first attempts done in {time.perf_counter() - started:.0f} s; waiting for the workflows to "
                  "settle …", flush=True)  # fmt: skip
            await asyncio.sleep(5)
            rss = {proc.name: proc.rss_bytes() for proc in measured}
            before = [proc.cpu_s() for proc in measured]
            await asyncio.sleep(IDLE_WINDOW_S)
            after = [proc.cpu_s() for proc in measured]
            running = await client.count_workflows(
                "WorkflowType = 'WebhookDeliveryWorkflow' AND ExecutionStatus = 'Running'"
            )
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    idle = {proc.name: (b - a) for proc, a, b in zip(measured, before, after, strict=True)}
    return {
        "deliveries": count,
        "first_attempts_received": first["received"],
        "still_running": running.count,
        "rss_mb": {name: round(b / 2**20) for name, b in rss.items()} | {"total": round(sum(rss.values()) / 2**20)},
        "idle_window_s": IDLE_WINDOW_S,
        "idle_cpu_s": {name: round(s, 2) for name, s in idle.items()},
        "idle_cpu_share_of_machine": round(sum(idle.values()) / (IDLE_WINDOW_S * cores), 4),
    }


async def main_async(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    load = await transfers_with_and_without(args)
    alone: dict[str, Any] = {}
    print("deliveries alone (bench/webhooks.py):", flush=True)
    await webhooks.bench(argparse.Namespace(deliveries=600, concurrency=50, warmup=60, gap_ms=25.0, keep=args.keep,
                                            profile=None), alone)  # fmt: skip
    print(json.dumps({"load": load}, indent=2), flush=True)  # kept should the parked run fail
    park = await parked(args.parked, PARKING_CONCURRENCY, args.keep) if args.parked else None
    result = {"load": load, "alone": alone, "parked": park, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "cores": len(os.sched_getaffinity(0))}  # fmt: skip
    report(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"webhook-load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(results: {path.relative_to(ROOT)})", file=sys.stderr)
    failed = any(load["failures"].values()) or load["deliveries"] == 0
    return 1 if failed else 0


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(result: dict[str, Any]) -> None:
    load, alone, park = result["load"], result["alone"], result["parked"]
    print()
    print(f"load average before {tuple(round(x, 2) for x in result['loadavg_before'])}, after "
          f"{tuple(round(x, 2) for x in result['loadavg_after'])}; {result['cores']} cores")  # fmt: skip
    for kind, failures in load["failures"].items():
        for failure in failures:
            print(f"  {kind} failure: {failure}")
    tp = load["throughput_per_s"]
    per = load["cpu_ms_per_transfer"]
    print(f"transfers/s without webhooks {tp['without']}, with {tp['with']} ({load['deliveries']} deliveries, "
          f"{load['deliveries_per_transfer']} per transfer, "
          f"{load['deliveries_per_workflow']} per workflow)")  # fmt: skip
    print(f"CPU ms per transfer without webhooks {per['without']}, with {per['with']}")
    cpu, lat = load["cpu_ms_per_delivery"], load["first_attempt_latency_ms"]
    both = cpu["server_plus_worker"]
    print(f"CPU per delivery under load: server {cpu['temporal']} ms, worker {cpu['worker']} ms, api {cpu['api']} "
          f"ms; server + worker {both} ms (target <= 10): {_verdict(both <= 10)}")  # fmt: skip
    print(f"first-attempt latency (occurredAt -> receiver) p50 {lat['p50']} ms, p95 {lat['p95']} ms (target <= 1000): "
          f"{_verdict(lat['p95'] <= 1000)}")  # fmt: skip
    parts = ", ".join(
        f"{name} p50 {p['p50']} / p95 {p['p95']} ms" for name, p in load["first_attempt_latency_parts_ms"].items()
    )
    print(f"  of which: {parts} (save -> dispatched -> attempt -> receiver)")
    by_state = load["first_attempt_latency_by_state_ms"].items()
    states = ", ".join(f"{state} {v['p50']}/{v['p95']}" for state, v in by_state)
    print(f"  by state (p50/p95 ms): {states}")
    if alone:
        print(f"deliveries/s alone {alone['deliveries_per_s']} (target >= 50): "
              f"{_verdict(alone['deliveries_per_s'] >= 50)}; server CPU per workflow that does nothing "
              f"{alone['server_cpu_ms_per_empty_workflow']} ms")  # fmt: skip
    if park:
        print(f"parked {park['deliveries']} ({park['still_running']} still running): RSS {park['rss_mb']} MB "
              f"(target <= 1024): {_verdict(park['rss_mb']['total'] <= 1024)}; CPU over {park['idle_window_s']:.0f} s "
              f"idle {park['idle_cpu_s']} s = {park['idle_cpu_share_of_machine']:.2%} of the machine (target <= 2 %): "
              f"{_verdict(park['idle_cpu_share_of_machine'] <= 0.02)}")  # fmt: skip
    print(
        f"ratio (with / without webhooks) throughput: {load['throughput_ratio']} (target >= 0.5): "
        f"{_verdict(load['throughput_ratio'] >= 0.5)}"
    )


def run(args: argparse.Namespace) -> int:
    """From `bench/bench.py --webhooks` (its -n, -c, --warmup, --keep; --parked is ours)."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main_async(args)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopped everything", file=sys.stderr)
        return 130
