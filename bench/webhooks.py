"""What one webhook delivery costs: Temporal server + worker CPU per delivery, first-attempt latency and
deliveries per second, on an isolated stack started here.

    .venv/bin/python bench/webhooks.py [-n 600] [-c 50] [--warmup 60] [--gap-ms 25] [--keep]

Starts, on free ports of 127.0.0.1 in a temporary data dir: the Temporal dev server (headless, our search
attributes, SQLite file), the webhook receiver simulator (answers 200, records every request) and our worker
process (`worker.py`: the transfers' worker idles, the deliveries' worker does the work). The bench plays the
transfers' part: N/6 made-up outbound transfers, C at a time, each saving its six states (RECEIVED ...
COMPLETED) `--gap-ms` apart through the real `Outbox` (state, event and delivery rows in one transaction, then its
dispatcher: signal-with-start of the transfer's `WebhookDeliveryWorkflow`), as the worker's save activity does,
and waits until the receiver has every event. CPU is psutil's user+system time over that phase, divided by N:
the server's, the worker's, and this process's (the saves and the dispatcher's calls, which run in the worker in
production). Latency is from a state's save to the receiver's arrival. Prints the figures and one delivery
workflow's history by event type; writes them as JSON into `bench/results/`. Stops everything it started, by PID,
at the end and on Ctrl-C.
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
from mojaflow.models import Direction, TransferRecord, TransferState, TransferView  # noqa: E402
from mojaflow.settings import Settings  # noqa: E402
from mojaflow.temporal import dev_server_flags  # noqa: E402
from mojaflow.webhook_outbox import Outbox  # noqa: E402
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
        argv += dev_server_flags(Settings())  # as `make run`: MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS applies
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


STATES = (
    TransferState.RECEIVED, TransferState.RESOLVING_PARTY, TransferState.REQUESTING_QUOTE,
    TransferState.HOLDING_FUNDS, TransferState.TRANSFERRING, TransferState.COMPLETED,
)  # fmt: skip
EVENTS_PER_TRANSFER = len(STATES)


def transfer_records(count: int) -> list[list[TransferRecord]]:
    """`count` made-up outbound transfers of the bench's client: the records of their six saved states each."""
    transfers = []
    for _ in range(count):
        transfer = os.urandom(16).hex()
        records, previous = [], None
        for revision, state in enumerate(STATES):
            view = TransferView(transfer_id=transfer, direction=Direction.OUTBOUND, current_state=state,
                                currency="USD", amount="10")  # fmt: skip
            records.append(TransferRecord(view=view, revision=revision, workflow_id=f"bench-{transfer}",
                                          client_key=CLIENT_KEY, previous_state=previous, product="retail_payments",
                                          payment_channel="online"))  # fmt: skip
            previous = state
        transfers.append(records)
    return transfers


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
    stack: Stack,
    outbox: Outbox,
    http: httpx.AsyncClient,
    transfers: list[list[TransferRecord]],
    concurrency: int,
    gap_s: float,
    *,
    until_closed: bool = True,
) -> dict[str, Any]:
    """Save every transfer's states (`concurrency` transfers at a time, `gap_s` between a transfer's states) through
    the outbox; wait until the receiver has every event and (`until_closed`) no delivery workflow runs."""
    (await http.delete(f"{stack.receiver_url}/_sim/events")).raise_for_status()
    me = psutil.Process()
    measured = [stack.procs["temporal"], stack.procs["worker"]]
    per = len(transfers) * EVENTS_PER_TRANSFER
    before = [proc.cpu_s() for proc in measured]
    mine = sum(me.cpu_times()[:2])
    began = time.perf_counter()
    pending = iter(transfers)

    async def saver() -> None:
        for records in pending:
            for index, record in enumerate(records):
                if index:
                    await asyncio.sleep(gap_s)
                await outbox.save(record)

    await asyncio.gather(*(saver() for _ in range(concurrency)))
    while (await http.get(f"{stack.receiver_url}/_sim/events", params={"limit": 1})).json()["count"] < per:
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - began
    client = await stack.client()
    while until_closed and (await client.count_workflows(
        "WorkflowType = 'WebhookDeliveryWorkflow' AND ExecutionStatus = 'Running'"
    )).count:  # fmt: skip
        await asyncio.sleep(0.1)  # their last workflow task (the upsert, the completion) counts too
    after = [proc.cpu_s() for proc in measured]
    mine = sum(me.cpu_times()[:2]) - mine
    events = await received(http, stack.receiver_url)
    latencies = sorted(
        (datetime.fromisoformat(e["receivedAt"]) - datetime.fromisoformat(e["body"]["data"]["occurredAt"]))
        .total_seconds() * 1000
        for e in events
    )  # fmt: skip
    server, worker = ((b - a) * 1000 / per for a, b in zip(before, after, strict=True))
    dispatch = mine * 1000 / per
    return {
        "deliveries": per,
        "received": len(events),
        "wall_s": round(wall, 2),
        "deliveries_per_s": round(per / wall, 1),
        "cpu_ms_per_delivery": {
            "server": round(server, 2),
            "worker": round(worker, 2),
            "saves_and_dispatch": round(dispatch, 2),
            "total": round(server + worker, 2),
            "total_with_dispatch": round(server + worker + dispatch, 2),
        },
        "latency_ms": {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)},
    }


@workflow.defn(name="BenchEmptyWorkflow")
class EmptyWorkflow:
    """Does nothing: one workflow task from start to end."""

    @workflow.run
    async def run(self, transfer: str) -> None:
        return None


async def floor_phase(stack: Stack, client: Client, transfers: list[str], concurrency: int) -> float:
    """Server CPU per workflow that does nothing, started the same way with the same input: what any
    workflow-per-delivery shape costs on this server before it does anything (its worker runs in this process)."""
    server = stack.procs["temporal"]
    queue = "bench-floor"
    async with Worker(client, task_queue=queue, workflows=[EmptyWorkflow], workflow_runner=UnsandboxedWorkflowRunner()):
        before = server.cpu_s()
        pending = iter(enumerate(transfers))

        async def starter() -> None:
            for index, transfer in pending:
                await client.start_workflow(EmptyWorkflow.run, transfer, id=f"floor-{index}", task_queue=queue)

        await asyncio.gather(*(starter() for _ in range(concurrency)))
        query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'"
        while (await client.count_workflows(query)).count < len(transfers):
            await asyncio.sleep(0.25)
        return round((server.cpu_s() - before) * 1000 / len(transfers), 2)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, round(q * (len(values) - 1)))
    return round(values[index], 1)


async def _delivery_workflow_ids(client: Client, subscription_id: str) -> list[str]:
    """The delivery workflows of the subscription (warm-up's and measured), oldest first."""
    query = f"WorkflowType = 'WebhookDeliveryWorkflow' AND WebhookSubscriptionId = '{subscription_id}'"
    ids = [(each.start_time, each.id) async for each in client.list_workflows(query)]
    return [workflow_id for _, workflow_id in sorted(ids)]


async def history_shape(client: Client, workflow_id: str) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        kinds[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
    return dict(kinds)


async def task_waits(client: Client, workflow_ids: list[str]) -> dict[str, float]:
    """Where a delivery workflow's time goes, from its history: a workflow task scheduled to started (queued for a
    worker), and started to completed (the worker's turn, the attempts included); p50 in ms over every task."""
    queued, working = [], []
    for workflow_id in workflow_ids:
        scheduled = started = 0.0
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            at = event.event_time.ToDatetime().timestamp()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                scheduled = at
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started = at
                queued.append((started - scheduled) * 1000)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                working.append((at - started) * 1000)
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
        outbox = Outbox(database, client, stack.settings)
        warm = transfer_records(args.warmup // EVENTS_PER_TRANSFER)
        measured = transfer_records(max(1, args.deliveries // EVENTS_PER_TRANSFER))
        gap = args.gap_ms / 1000
        async with httpx.AsyncClient(timeout=30) as http:
            if warm:
                print(f"  warm-up: {len(warm) * EVENTS_PER_TRANSFER} deliveries …", flush=True)
                await run_phase(stack, outbox, http, warm, args.concurrency, gap)
            print(f"  measured: {len(measured) * EVENTS_PER_TRANSFER} deliveries …", flush=True)
            machine_before = psutil.cpu_times()
            figures = await run_phase(stack, outbox, http, measured, args.concurrency, gap)
            machine_after = psutil.cpu_times()
            ids = [records[0].view.transfer_id for records in measured]
            print(f"  floor: {len(ids)} workflows that do nothing …", flush=True)
            figures["server_cpu_ms_per_empty_workflow"] = await floor_phase(stack, client, ids, args.concurrency)
        workflow_ids = await _delivery_workflow_ids(client, subscription.subscription_id)
        figures["workflows"] = len(workflow_ids)
        figures["history"] = await history_shape(client, workflow_ids[-1])
        figures["task_waits"] = await task_waits(client, workflow_ids[:: max(1, len(workflow_ids) // 20)])
        await outbox.aclose()
        await database.close()
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    busy = (sum(machine_after) - machine_after.idle) - (sum(machine_before) - machine_before.idle)
    figures["machine_cpu_ms_per_delivery"] = round(busy * 1000 / figures["deliveries"], 2)
    cpu = figures["cpu_ms_per_delivery"]
    print(f"deliveries: {figures['received']}/{figures['deliveries']} received in {figures['wall_s']} s "
          f"({figures['deliveries_per_s']}/s); first-attempt latency p50 {figures['latency_ms']['p50']} ms, "
          f"p95 {figures['latency_ms']['p95']} ms")  # fmt: skip
    print(f"history of one transfer's delivery workflow ({EVENTS_PER_TRANSFER} events): "
          f"{sum(figures['history'].values())} history events {figures['history']}")  # fmt: skip
    print(f"workflow task: queued p50 {figures['task_waits']['queued_p50_ms']} ms, worked p50 "
          f"{figures['task_waits']['working_p50_ms']} ms")  # fmt: skip
    print(f"CPU per delivery: server {cpu['server']} ms, worker {cpu['worker']} ms, "
          f"server + worker {cpu['total']} ms (target <= 10 ms); the saves and the dispatcher (here in the bench's "
          f"process, in the worker in production) {cpu['saves_and_dispatch']} ms")  # fmt: skip
    print(f"server CPU per workflow that does nothing (one per transfer, started alike): "
          f"{figures['server_cpu_ms_per_empty_workflow']} ms")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"webhooks-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({**figures, "args": vars(args), "cores": cores}, indent=2))
    if out is not None:
        out.update(figures)
    return 0 if figures["received"] >= figures["deliveries"] else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--deliveries", type=int, default=600, help="six per made-up transfer")
    parser.add_argument("-c", "--concurrency", type=int, default=50, help="transfers saving at once")
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--gap-ms", type=float, default=25.0, help="between a transfer's saved states")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, databases)")
    parser.add_argument("--profile", metavar="OUT.prof", help="cProfile the worker (figures then not comparable)")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
