"""`make bench`: N transfers at concurrency C through mojaflow's client API, and the same number of bare
three-activity Temporal workflows, on one isolated stack started here; throughput, latency and CPU per transfer.

    .venv/bin/python bench/bench.py [-n 200] [-c 20] [--warmup 20] [--profile] [--keep]

Starts, on free ports of 127.0.0.1 in a temporary data dir: the Temporal dev server (as `make run` starts it,
headless, our search attributes, SQLite file), the SDK and CBS simulators, our API and worker, and the bare
baseline's worker (`bench/baseline.py`) on its own task queue. Each phase (ours, then bare) runs N transfers at
concurrency C after W warm-up transfers; CPU is psutil's user+system time of each process before and after the
phase. Prints a table, the per-transfer CPU ratios, and last the throughput ratio; writes the figures as JSON into
`bench/results/`. Stops everything it started, by PID, at the end and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import temporalio  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.baseline import BareTransfer, BareTransferWorkflow  # noqa: E402
from bench.stack import Proc, free_port, http_ok, tcp_open  # noqa: E402
from mojaflow.settings import Settings  # noqa: E402
from mojaflow.temporal import dev_server_flags  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
PAYER, PAYEE = "25644444444", "25633333333"  # the CBS simulator's seeded payer holds 1,000,000 USD
CLIENT_KEY = "bench"


# -- one phase: N transfers at concurrency C -------------------------------------------------------------


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
        """Linear interpolation between closest ranks (numpy's default)."""
        values = sorted(self.latencies_ms)
        if not values:
            return float("nan")
        rank = (len(values) - 1) * q
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)

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


# -- the two kinds of transfer ---------------------------------------------------------------------------


def money_movement_headers() -> dict[str, str]:
    return {
        "client_key": CLIENT_KEY,
        "product": "retail_payments",
        "payment_channel": "mobile_banking",
        "idempotent_request_key": uuid.uuid4().hex,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def transfer_body() -> dict[str, Any]:
    return {
        "homeTransactionId": f"bench-{uuid.uuid4()}",
        "from": {"idType": "MSISDN", "idValue": PAYER},
        "to": {"idType": "MSISDN", "idValue": PAYEE},
        "amountType": "SEND",
        "currency": "USD",
        "amount": "1",
        "transactionType": "TRANSFER",
    }


def mojaflow_transfer(http: httpx.AsyncClient, api_url: str, keys: list[str]) -> Callable[[int], Awaitable[str | None]]:
    """`POST /transfers` with the default `Prefer` wait: it answers once the transfer is COMPLETED (201)."""

    async def one(_: int) -> str | None:
        headers = money_movement_headers()
        keys.append(headers["idempotent_request_key"])
        response = await http.post(f"{api_url}/transfers", headers=headers, json=transfer_body())
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        state = answer.get("currentState")
        if response.status_code == 201 and state == "COMPLETED":
            return None
        error = answer.get("lastError") or answer.get("code") or answer.get("detail") or response.text[:200]
        return f"HTTP {response.status_code} {state}: {error}"

    return one


def bare_transfer(client: Client, task_queue: str, ids: list[str]) -> Callable[[int], Awaitable[str | None]]:
    async def one(_: int) -> str | None:
        workflow_id = f"bare-{uuid.uuid4()}"
        ids.append(workflow_id)
        result = await client.execute_workflow(
            BareTransferWorkflow.run, BareTransfer(body=transfer_body()), id=workflow_id, task_queue=task_queue
        )
        return None if result.state == "COMPLETED" else f"ended {result.state}"

    return one


async def history_shape(client: Client, workflow_id: str) -> dict[str, Any]:
    """What one transfer costs Temporal: its history events by type, and the workflow tasks it took."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(
        (event.WhichOneof("attributes") or "?").removesuffix("_event_attributes") for event in history.events
    )
    return {"events": len(history.events), "by_type": dict(sorted(kinds.items()))}


# -- the stack -------------------------------------------------------------------------------------------


@dataclass
class Stack:
    data_dir: Path
    profile_dir: Path | None
    procs: dict[str, Proc] = field(default_factory=dict)
    temporal_address: str = ""
    api_url: str = ""
    sdk_url: str = ""
    api_key: str = ""
    our_task_queue: str = "bench-mojaflow"
    bare_task_queue: str = "bench-bare"
    extra_env: dict[str, str] = field(default_factory=dict)  # for our API and worker (the webhook run's settings)

    def python(self, name: str, *argv: str) -> list[str]:
        """A Python child, under `bench/profiled.py` (cProfile in every thread) when profiling."""
        if self.profile_dir is None:
            return [sys.executable, *argv]
        profile = self.profile_dir / f"{name}.prof"
        return [sys.executable, str(ROOT / "bench" / "profiled.py"), str(profile), *argv]

    async def add(self, proc: Proc) -> Proc:
        self.procs[proc.name] = proc
        print(f"  starting {proc.name} …", end="", flush=True)
        started = time.perf_counter()
        await proc.start()
        print(f" pid {proc.pid}, {time.perf_counter() - started:.1f} s", flush=True)
        return proc

    async def start(self) -> Client:
        log = self.data_dir
        temporal_port = free_port()
        self.temporal_address = f"127.0.0.1:{temporal_port}"
        argv = [
            str(BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(temporal_port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(self.data_dir / "temporal.db"), "--log-level", "warn",
        ]  # fmt: skip
        argv += dev_server_flags(Settings())  # as `make run`: MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS applies
        await self.add(Proc("temporal", argv, log_path=log / "temporal.log", ready=tcp_open(temporal_port)))
        client = await _connect(self.temporal_address)

        sdk_port, cbs_port = free_port(), free_port()
        self.sdk_url, cbs_url = f"http://127.0.0.1:{sdk_port}", f"http://127.0.0.1:{cbs_port}"
        for name, module, port in (("sdk-sim", "simulators.sdk", sdk_port), ("cbs-sim", "simulators.cbs", cbs_port)):
            argv = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(self.data_dir / name)]
            await self.add(
                Proc(name, argv, log_path=log / f"{name}.log", ready=http_ok(f"http://127.0.0.1:{port}/health"),
                     cwd=str(ROOT))
            )  # fmt: skip

        client_port, backend_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{client_port}"
        env = {
            "MOJAFLOW_DATA_DIR": str(self.data_dir / "mojaflow"),
            "MOJAFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "MOJAFLOW_TASK_QUEUE": self.our_task_queue,
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(os.urandom(32)).decode(),
            "MOJAFLOW_SDK_URL": self.sdk_url,
            "MOJAFLOW_CBS_URL": cbs_url,
            "MOJAFLOW_CLIENT_API_PORT": str(client_port),
            "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
            "MOJAFLOW_RATE_LIMIT_PER_MINUTE": "0",  # one key sends every transfer: measure the stack, not the limit
            **self.extra_env,
        }
        (self.data_dir / "mojaflow").mkdir()
        made = subprocess.run(  # the client API's key, as an operator makes one
            [sys.executable, "-m", "mojaflow.cli", "keys", "create", "--client-key", CLIENT_KEY, "--name", "bench"],
            env={**os.environ, **env}, cwd=str(ROOT), capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.api_key = made.stdout.strip()
        await self.add(
            Proc("api", self.python("api", "-m", "api"), env=env, cwd=str(ROOT), log_path=log / "api.log",
                 ready=http_ok(f"{self.api_url}/openapi.json"))
        )  # fmt: skip
        await self.add(  # healthy once it polls our task queue
            Proc("worker", self.python("worker", "worker.py"), env=env, cwd=str(ROOT), log_path=log / "worker.log",
                 ready=http_ok(f"{self.api_url}/health"))
        )  # fmt: skip
        argv = self.python(
            "bare-worker", str(ROOT / "bench" / "baseline.py"), "worker", "--address", self.temporal_address,
            "--task-queue", self.bare_task_queue, "--sdk-url", self.sdk_url,
        )  # fmt: skip
        await self.add(
            Proc("bare-worker", argv, cwd=str(ROOT), log_path=log / "bare-worker.log",
                 ready=_polled(client, self.bare_task_queue))
        )  # fmt: skip
        return client

    def stop(self) -> None:
        """Everything of ours at once, then Temporal last (the workers shut down while it still answers)."""
        procs = list(self.procs.values())
        for proc in procs:
            if proc.name != "temporal":
                proc.terminate()
        for proc in reversed(procs):
            try:
                started = time.perf_counter()
                proc.stop()
                if time.perf_counter() - started > 3:
                    print(f"  ({proc.name} took {time.perf_counter() - started:.0f} s to stop)", flush=True)
            except Exception as error:  # noqa: BLE001 - stop the others anyway
                print(f"could not stop {proc.name} (pid {proc.popen.pid if proc.popen else '?'}): {error}")


async def _connect(address: str, timeout_s: float = 30) -> Client:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _polled(client: Client, task_queue: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        request = DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        response = await client.workflow_service.describe_task_queue(request)
        return bool(response.pollers)

    return ready


# -- report ----------------------------------------------------------------------------------------------

COLUMNS = ("temporal", "worker", "api", "sdk-sim", "cbs-sim", "driver")


def table(ours: Phase, bare: Phase) -> list[str]:
    head = (
        f"{'':22}{'ok':>5}{'fail':>5}{'tx/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}  | CPU ms per transfer: "
        + "".join(f"{c:>9}" for c in ("server", "worker", "api", "sdk-sim", "cbs-sim", "driver", "total"))
    )
    lines = [head, "-" * len(head)]
    for label, phase, worker in (
        ("mojaflow (client API)", ours, "worker"),
        ("bare (3 activities)", bare, "bare-worker"),
    ):
        cpu = [phase.per_transfer(name) for name in ("temporal", worker, "api", "sdk-sim", "cbs-sim", "driver")]
        if phase is bare:
            cpu[2] = 0.0  # our API idles during the bare phase: not part of the bare cost
        lines.append(
            f"{label:22}{phase.ok:>5}{len(phase.failures):>5}{phase.throughput:>8.1f}"
            f"{phase.percentile(0.5):>8.0f}{phase.percentile(0.95):>8.0f}{phase.percentile(0.99):>8.0f}  | "
            + " " * 21
            + "".join(f"{value:>9.1f}" for value in cpu)
            + f"{sum(cpu):>9.1f}"
        )
    return lines


def per_transfer_totals(phase: Phase, worker: str, with_api: bool) -> dict[str, float]:
    parts = ["temporal", worker, "sdk-sim", "cbs-sim", "driver"] + (["api"] if with_api else [])
    return {
        "server": phase.per_transfer("temporal"),
        "worker": phase.per_transfer(worker),
        "total": sum(phase.per_transfer(name) for name in parts),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# -- main ------------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-bench-"))
    profile_dir = data_dir / "profiles" if args.profile else None
    if profile_dir:
        profile_dir.mkdir()
    stack = Stack(data_dir=data_dir, profile_dir=profile_dir)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    print(f"mojaflow bench: {args.transfers} transfers at concurrency {args.concurrency}, warm-up {args.warmup}; "
          f"{cores} cores; data in {data_dir}")  # fmt: skip
    try:
        client = await stack.start()
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        async with httpx.AsyncClient(timeout=90, limits=limits, headers=auth) as http:
            our_keys: list[str] = []
            bare_ids: list[str] = []
            ours_one = mojaflow_transfer(http, stack.api_url, our_keys)
            bare_one = bare_transfer(client, stack.bare_task_queue, bare_ids)
            kinds = {"mojaflow": (ours_one, "worker"), "bare": (bare_one, "bare-worker")}
            phases = {name: Phase(name, args.transfers, args.concurrency) for name in kinds}
            measured = dict(stack.procs)
            if args.warmup:
                for name, (one, _) in kinds.items():
                    print(f"  warm-up {name}: {args.warmup} transfers …", flush=True)
                    warm = await run_phase(Phase(name, args.warmup, args.concurrency), args.warmup, one, measured, [])
                    if warm.failures:
                        print(f"    {len(warm.failures)} warm-up failures, e.g. {warm.failures[0]}")
            # Rounds alternate the order (ours, bare; bare, ours; ...) so that a drift in the machine's load
            # or in Temporal's database weighs on both alike.
            counts = [args.transfers // args.rounds + (i < args.transfers % args.rounds) for i in range(args.rounds)]
            for round_index, count in enumerate(counts):
                order = list(kinds) if round_index % 2 == 0 else list(reversed(kinds))
                for name in order:
                    one, worker = kinds[name]
                    print(f"  round {round_index + 1}/{args.rounds}, {name}: {count} transfers …", flush=True)
                    await run_phase(phases[name], count, one, measured, [worker])
            ours, bare = phases["mojaflow"], phases["bare"]
            shapes = {
                "mojaflow": await history_shape(client, f"outbound-{CLIENT_KEY}-{our_keys[-1]}"),
                "bare": await history_shape(client, bare_ids[-1]),
            }
    finally:
        print("  stopping the stack …", flush=True)
        stack.stop()
        if not (args.keep or args.profile):
            shutil.rmtree(data_dir, ignore_errors=True)

    ours_cpu = per_transfer_totals(ours, "worker", with_api=True)
    bare_cpu = per_transfer_totals(bare, "bare-worker", with_api=False)
    ratios = {
        "throughput": _ratio(ours.throughput, bare.throughput),
        "p50_latency": _ratio(ours.percentile(0.5), bare.percentile(0.5)),
        **{f"cpu_{key}": _ratio(ours_cpu[key], bare_cpu[key]) for key in ("server", "worker", "total")},
    }

    print()
    for phase in (ours, bare):
        for failure in phase.failures[:10]:
            print(f"  {phase.name} failure: {failure}")
    for line in table(ours, bare):
        print(line)
    print()
    for name, shape in shapes.items():
        by_type = ", ".join(f"{kind} {count}" for kind, count in shape["by_type"].items())
        print(f"history of one {name} transfer: {shape['events']} events ({by_type})")
    for name, phase in (("mojaflow worker", ours), ("bare worker", bare)):
        groups = next(iter(phase.threads_cpu_ms.values()), {})
        text = ", ".join(f"{group} {ms / phase.n:.1f}" for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]))
        print(f"{name} CPU ms per transfer by thread: {text}")
    for phase in (ours, bare):
        share = phase.background_share(cores)
        if share > 0.05:
            print(
                f"warning: other processes used {share:.0%} of the machine's CPU during the {phase.name} phase; "
                "throughput and latency are not reliable, CPU per transfer less affected"
            )
    if profile_dir:
        print(f"profiles (cProfile, all threads; figures above are inflated by profiling): {profile_dir}")
    print(
        f"ratio (mojaflow / bare) CPU per transfer: server {ratios['cpu_server']:.2f}, "
        f"worker {ratios['cpu_worker']:.2f}, total {ratios['cpu_total']:.2f}"
    )
    print(f"ratio (mojaflow / bare) throughput: {ratios['throughput']:.2f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "timestamp": stamp,
        "args": {"transfers": args.transfers, "concurrency": args.concurrency, "warmup": args.warmup,
                 "rounds": args.rounds, "profile": args.profile},
        "machine": {"cores": cores, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "temporalio": temporalio.__version__,
                    "temporal_cli": _temporal_version()},
        "git": _git_head(),
        "phases": {name: phase.summary(cores) for name, phase in phases.items()},
        "cpu_ms_per_transfer_totals": {"mojaflow": ours_cpu, "bare": bare_cpu},
        "history": shapes,
        "ratio": ratios,
        "data_dir": str(data_dir) if args.keep or args.profile else None,
    }  # fmt: skip
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(results: {path.relative_to(ROOT)})", file=sys.stderr)
    return 1 if ours.failures or bare.failures else 0


def _temporal_version() -> str:
    try:
        out = subprocess.run([str(BIN / "temporal"), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT)  # fmt: skip
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--e2e" in argv:  # against the real SDK and TTK: bench/e2e_latency.py, its own options
        from bench import e2e_latency

        e2e_latency.main(argv)
    parser = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--transfers", type=int, default=200, help="measured transfers per phase (200)")
    parser.add_argument("-c", "--concurrency", type=int, default=20, help="transfers in flight at once (20)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured transfers before each phase (20)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="split the measured transfers into rounds of alternating order (2: ours, bare, bare, ours)",
    )
    parser.add_argument("--profile", action="store_true",
                        help="run both workers under cProfile (all threads); keeps the .prof files")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, Temporal's database)")
    parser.add_argument(
        "--webhooks", action="store_true", help="the webhook run instead (bench/webhook_load.py; -n, -c, --warmup)"
    )
    parser.add_argument(
        "--parked", type=int, default=0, metavar="N", help="with --webhooks: also N deliveries parked in retry"
    )
    parser.add_argument("--e2e", action="store_true", help="the end-to-end latency run (bench/e2e_latency.py)")
    args = parser.parse_args(argv)
    if args.webhooks:
        from bench import webhook_load

        sys.exit(webhook_load.run(args))
    if args.transfers < 1 or args.concurrency < 1 or args.warmup < 0 or not 1 <= args.rounds <= args.transfers:
        parser.error("need --transfers >= 1, --concurrency >= 1, --warmup >= 0, 1 <= --rounds <= --transfers")

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await bench(args)

    try:
        code = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopped everything", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
