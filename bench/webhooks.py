"""What one webhook delivery costs: Temporal server + worker CPU per delivery (start, one attempt, complete),
first-attempt latency and deliveries per second, on an isolated stack started here.

    .venv/bin/python bench/webhooks.py [-n 500] [-c 50] [--warmup 50] [--keep]

Starts, on free ports of 127.0.0.1 in a temporary data dir: the Temporal dev server (headless, our search
attributes, SQLite file), the webhook receiver simulator (answers 200, records every request) and our worker
process (`worker.py`: the transfers' worker idles, the deliveries' worker does the work). The bench writes N events
and their deliveries to one subscription into our database, as the outbox does, then starts their
`WebhookDeliveryWorkflow`s (C starts in flight at a time, as the outbox's dispatch does after a commit) and waits
until the receiver has them all. CPU is psutil's user+system time of the server and the worker processes over that
phase, divided by N (DESIGN: server + worker <= 10 ms per delivery). Latency is from the start's call to the
receiver's arrival time. Prints the figures and one delivery's history by event type; writes them as JSON into
`bench/results/`. Stops everything it started, by PID, at the end and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from temporalio import workflow  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from bench.stack import Proc, free_port, http_ok, tcp_open  # noqa: E402
from mojaflow.codec import data_converter  # noqa: E402
from mojaflow.database import Database  # noqa: E402
from mojaflow.keys import load_secrets_ring  # noqa: E402
from mojaflow.models import Direction, TransferState  # noqa: E402
from mojaflow.settings import Settings  # noqa: E402
from mojaflow.temporal import SEARCH_ATTRIBUTES  # noqa: E402
from mojaflow.webhook_deliveries import insert_delivery, insert_event  # noqa: E402
from mojaflow.webhook_models import DeliveryInput, PaymentStatus, WebhookEvent, delivery_workflow_id, event_id  # noqa: E402
from mojaflow.webhook_subscription_models import SubscriptionCreate  # noqa: E402
from mojaflow.webhook_subscriptions import create_subscription  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
CLIENT_KEY = "bench"


class Stack:
    def __init__(self, data_dir: Path, *, profile: Path | None = None) -> None:
        self.data_dir = data_dir
        self.profile = profile
        self.procs: dict[str, Proc] = {}
        self.payload_key = os.urandom(32)
        secrets_key = base64.b64encode(os.urandom(32)).decode()
        temporal_port, receiver_port = free_port(), free_port()
        self.temporal_address = f"127.0.0.1:{temporal_port}"
        self.receiver_url = f"http://127.0.0.1:{receiver_port}"
        self.env = {
            "MOJAFLOW_DATA_DIR": str(data_dir / "mojaflow"),
            "MOJAFLOW_TEMPORAL_ADDRESS": self.temporal_address,
            "MOJAFLOW_TASK_QUEUE": "bench-transfers",
            "MOJAFLOW_WEBHOOK_TASK_QUEUE": "bench-webhooks",
            "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(self.payload_key).decode(),
            "MOJAFLOW_SECRETS_KEYS": f"bench:{secrets_key}",
            "MOJAFLOW_LOG_LEVEL": "WARNING",
        }
        self.settings = Settings(
            data_dir=data_dir / "mojaflow",
            webhook_task_queue="bench-webhooks",
            secrets_keys=[SecretStr(f"bench:{secrets_key}")],
        )

    async def add(self, proc: Proc) -> None:
        self.procs[proc.name] = proc
        started = time.perf_counter()
        await proc.start()
        print(f"  {proc.name} up (pid {proc.pid}, {time.perf_counter() - started:.1f} s)", flush=True)

    async def start(self) -> None:
        (self.data_dir / "mojaflow").mkdir()
        port = self.temporal_address.rsplit(":", 1)[1]
        argv = [
            str(BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", port,
            "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(self.data_dir / "temporal.db"), "--log-level", "warn",
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        await self.add(Proc("temporal", argv, log_path=self.data_dir / "temporal.log", ready=tcp_open(int(port))))
        receiver_port = self.receiver_url.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "simulators.webhook_receiver", "--port", receiver_port,
                "--data-dir", str(self.data_dir / "receiver")]  # fmt: skip
        await self.add(
            Proc("receiver", argv, log_path=self.data_dir / "receiver.log", cwd=str(ROOT),
                 ready=http_ok(f"{self.receiver_url}/health"))
        )  # fmt: skip
        client = await self.client()
        await self.add(
            Proc("worker", self.worker_argv(), env=self.env, cwd=str(ROOT),
                 log_path=self.data_dir / "worker.log", ready=lambda: _polled(client))
        )  # fmt: skip

    def worker_argv(self) -> list[str]:
        """`worker.py`, under `bench/profiled.py` (cProfile in every thread) with `--profile`."""
        if self.profile is None:
            return [sys.executable, "worker.py"]
        return [sys.executable, str(ROOT / "bench" / "profiled.py"), str(self.profile), "worker.py"]

    async def client(self) -> Client:
        deadline = time.monotonic() + 30
        while True:
            try:
                return await Client.connect(self.temporal_address, data_converter=data_converter(self.payload_key))
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()


async def _polled(client: Client) -> bool:
    """The worker is up once its deliveries' worker polls (a start before would only queue)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    request = DescribeTaskQueueRequest(
        namespace="default",
        task_queue=TaskQueue(name="bench-webhooks"),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    return bool((await client.workflow_service.describe_task_queue(request)).pollers)


async def make_deliveries(database: Database, subscription_id: str, count: int) -> list[DeliveryInput]:
    """`count` events of distinct transfers and their deliveries, as the outbox writes them."""
    made = []
    async with database.engine.begin() as connection:
        for _ in range(count):
            transfer = os.urandom(16).hex()
            status = PaymentStatus(
                transfer_id=transfer, direction=Direction.OUTBOUND, current_state=TransferState.COMPLETED,
                previous_state=TransferState.TRANSFERRING, sequence=6, amount="10.00", currency="USD",
                occurred_at=datetime.now(UTC),
            )  # fmt: skip
            event = WebhookEvent(id=event_id(transfer, 6), data=status)
            await insert_event(connection, event, client_key=CLIENT_KEY, product="retail_payments",
                               payment_channel="online")  # fmt: skip
            delivery = await insert_delivery(
                connection, event_id=event.id, subscription_id=subscription_id, transfer_id=transfer,
                client_key=CLIENT_KEY, dispatched=True,  # the bench starts it, not the worker's sweeper
            )  # fmt: skip
            made.append(DeliveryInput(delivery_id=delivery, event_id=event.id, subscription_id=subscription_id,
                                      transfer_id=transfer))  # fmt: skip
    return made


async def received(http: httpx.AsyncClient, receiver_url: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await http.get(f"{receiver_url}/_sim/events", params={"after": after, "limit": 1000})).json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["events"][-1]["seq"]


async def run_phase(
    stack: Stack, client: Client, http: httpx.AsyncClient, deliveries: list[DeliveryInput], concurrency: int
) -> dict[str, Any]:
    """Start every delivery (`concurrency` starts in flight), wait until the receiver has them all."""
    (await http.delete(f"{stack.receiver_url}/_sim/events")).raise_for_status()
    measured = [stack.procs["temporal"], stack.procs["worker"]]
    started_at: dict[str, float] = {}
    before = [proc.cpu_s() for proc in measured]
    began = time.perf_counter()
    pending = iter(deliveries)

    async def starter() -> None:
        for delivery in pending:
            started_at[delivery.event_id] = time.time()
            await client.start_workflow(
                "WebhookDeliveryWorkflow", delivery, id=delivery_workflow_id(delivery.delivery_id, 1),
                task_queue=stack.settings.webhook_task_queue,
            )  # fmt: skip

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    while True:
        count = (await http.get(f"{stack.receiver_url}/_sim/events", params={"limit": 1})).json()["count"]
        if count >= len(deliveries):
            break
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - began
    await asyncio.sleep(1.0)  # the last workflows complete after their POST: count their completion too
    after = [proc.cpu_s() for proc in measured]
    events = await received(http, stack.receiver_url)
    latencies = sorted(
        (datetime.fromisoformat(e["receivedAt"]).timestamp() - started_at[e["eventId"]]) * 1000
        for e in events
        if e["eventId"] in started_at
    )
    per = len(deliveries)
    return {
        "deliveries": per,
        "received": len(events),
        "wall_s": round(wall, 2),
        "deliveries_per_s": round(per / wall, 1),
        "cpu_ms_per_delivery": {
            "server": round((after[0] - before[0]) * 1000 / per, 2),
            "worker": round((after[1] - before[1]) * 1000 / per, 2),
            "total": round(sum(after) * 1000 / per - sum(before) * 1000 / per, 2),
        },
        "latency_ms": {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)},
    }


@workflow.defn(name="BenchEmptyWorkflow")
class EmptyWorkflow:
    """Does nothing: one workflow task from start to end."""

    @workflow.run
    async def run(self, delivery: DeliveryInput) -> None:
        return None


async def floor_phase(stack: Stack, client: Client, deliveries: list[DeliveryInput], concurrency: int) -> float:
    """Server CPU per workflow that does nothing, started the same way with the same input: what any
    workflow-per-delivery shape costs on this server before it does anything (its worker runs in this process)."""
    server = stack.procs["temporal"]
    queue = "bench-floor"
    async with Worker(client, task_queue=queue, workflows=[EmptyWorkflow], workflow_runner=UnsandboxedWorkflowRunner()):
        before = server.cpu_s()
        pending = iter(enumerate(deliveries))

        async def starter() -> None:
            for index, delivery in pending:
                await client.start_workflow(EmptyWorkflow.run, delivery, id=f"floor-{index}", task_queue=queue)

        await asyncio.gather(*(starter() for _ in range(concurrency)))
        query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'"
        while (await client.count_workflows(query)).count < len(deliveries):
            await asyncio.sleep(0.25)
        return round((server.cpu_s() - before) * 1000 / len(deliveries), 2)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, round(q * (len(values) - 1)))
    return round(values[index], 1)


async def history_shape(client: Client, delivery: DeliveryInput) -> dict[str, int]:
    handle = client.get_workflow_handle(delivery_workflow_id(delivery.delivery_id, 1))
    kinds: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        kinds[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
    return dict(kinds)


async def task_waits(client: Client, deliveries: list[DeliveryInput]) -> dict[str, float]:
    """Where a delivery's time goes, from its history: start to workflow task started (queued for a worker), and
    workflow task started to completed (the worker's turn, the attempt included); p50 in ms."""
    queued, working = [], []
    for delivery in deliveries:
        handle = client.get_workflow_handle(delivery_workflow_id(delivery.delivery_id, 1))
        times: dict[int, float] = {}
        async for event in handle.fetch_history_events():
            times.setdefault(event.event_type, event.event_time.ToDatetime().timestamp())
        queued.append(
            (times[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED] - times[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED])
            * 1000
        )
        working.append(
            (times[EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED] - times[EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED])
            * 1000
        )
    return {"queued_p50_ms": _percentile(sorted(queued), 0.5), "working_p50_ms": _percentile(sorted(working), 0.5)}


async def bench(args: argparse.Namespace, out: dict[str, Any] | None = None) -> int:
    """Run it, print the figures; `out` (when given) receives them too (`bench/webhook_load.py` reuses this)."""
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-bench-webhooks-"))
    profile = Path(args.profile).resolve() if args.profile else None
    stack = Stack(data_dir, profile=profile)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    print(f"webhook bench: {args.deliveries} deliveries, {args.concurrency} starts in flight, warm-up "
          f"{args.warmup}; {cores} cores; data in {data_dir}")  # fmt: skip
    try:
        await stack.start()
        client = await stack.client()
        database = Database(stack.settings.resolved_database_url, secrets=load_secrets_ring(stack.settings))
        await database.create_schema()
        request = SubscriptionCreate.model_validate({
            "url": f"{stack.receiver_url}/hooks", "eventTypes": ["moneymovementservices.payment.status_updated"],
            "auth": {"type": "api_keys", "headers": {"X-Bench-Key": base64.b64encode(os.urandom(18)).decode()}},
        })  # fmt: skip
        subscription = await create_subscription(database, CLIENT_KEY, request)
        warm = await make_deliveries(database, subscription.subscription_id, args.warmup)
        measured = await make_deliveries(database, subscription.subscription_id, args.deliveries)
        async with httpx.AsyncClient(timeout=30) as http:
            if warm:
                print(f"  warm-up: {len(warm)} deliveries …", flush=True)
                await run_phase(stack, client, http, warm, args.concurrency)
            print(f"  measured: {len(measured)} deliveries …", flush=True)
            machine_before = psutil.cpu_times()
            figures = await run_phase(stack, client, http, measured, args.concurrency)
            machine_after = psutil.cpu_times()
            print(f"  floor: {len(measured)} workflows that do nothing …", flush=True)
            figures["server_cpu_ms_per_empty_workflow"] = await floor_phase(stack, client, measured, args.concurrency)
        figures["history"] = await history_shape(client, measured[-1])
        figures["task_waits"] = await task_waits(client, measured[:: max(1, len(measured) // 20)])
        await database.close()
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    busy = (sum(machine_after) - machine_after.idle) - (sum(machine_before) - machine_before.idle)
    figures["machine_cpu_ms_per_delivery"] = round(busy * 1000 / args.deliveries, 2)
    cpu = figures["cpu_ms_per_delivery"]
    print(f"deliveries: {figures['received']}/{figures['deliveries']} received in {figures['wall_s']} s "
          f"({figures['deliveries_per_s']}/s); first-attempt latency p50 {figures['latency_ms']['p50']} ms, "
          f"p95 {figures['latency_ms']['p95']} ms")  # fmt: skip
    print(f"history of one delivery: {sum(figures['history'].values())} events {figures['history']}")
    print(f"workflow task: queued p50 {figures['task_waits']['queued_p50_ms']} ms, worked p50 "
          f"{figures['task_waits']['working_p50_ms']} ms")  # fmt: skip
    print(f"CPU per delivery: server {cpu['server']} ms, worker {cpu['worker']} ms, "
          f"server + worker {cpu['total']} ms (target <= 10 ms)")  # fmt: skip
    print(f"server CPU per workflow that does nothing (same input, same starts): "
          f"{figures['server_cpu_ms_per_empty_workflow']} ms")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"webhooks-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({**figures, "args": vars(args), "cores": cores}, indent=2))
    if out is not None:
        out.update(figures)
    return 0 if figures["received"] >= figures["deliveries"] else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--deliveries", type=int, default=500)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, databases)")
    parser.add_argument("--profile", metavar="OUT.prof", help="cProfile the worker (figures then not comparable)")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
