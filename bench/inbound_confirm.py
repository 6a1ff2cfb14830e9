"""What MOJAFLOW_INBOUND_CONFIRM_COMMIT costs: the time from the SDK's COMMITTED notification to the inbound
transfer's end (credit committed at the CBS, final state saved), with the confirmation and without it.

    .venv/bin/python bench/inbound_confirm.py [-n 20]

Starts on free ports of 127.0.0.1, in a temporary data dir: the Temporal dev server (SQLite file, as `make run`),
the SDK and CBS simulators, one worker and two API processes, one with the setting on (the default) and one with
it off, so both kinds run on the same worker, interleaved. Each transfer is quoted, reserved, committed at the
simulator's switch, then notified; its latency is taken from the workflow's own history (the signal's event time
to the completion's), so polling does not blur it. Prints the median and p90 of each and the median difference.
Stops everything it started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus  # noqa: E402

from bench.stack import Proc, free_port, http_ok, tcp_open  # noqa: E402
from mojaflow.settings import Settings  # noqa: E402
from mojaflow.temporal import dev_server_flags, inbound_workflow_id  # noqa: E402
from tests.inbound.flow import Payee, notification, quote_request, transfer_request  # noqa: E402

BIN = Path(sys.executable).parent
PAYEE = Payee("acc-0002", "25622222222", "USD")  # seeded by the CBS simulator


async def one_transfer(http: httpx.AsyncClient, client: Client, backend: str, sdk_url: str) -> float:
    """Seconds from the notification's signal to the workflow's completion, by the history's clock."""
    quote = (await http.post(f"{backend}/quoterequests", json=quote_request(PAYEE, "1"))).json()
    reserved = await http.post(f"{backend}/transfers", json=transfer_request(PAYEE, quote))
    assert reserved.json().get("transferState") == "RESERVED", reserved.text
    transfer_id = quote["transactionId"]
    await http.put(f"{sdk_url}/_sim/switch/{transfer_id}", json={"transferState": "COMMITTED"})
    await http.put(f"{backend}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED"))
    handle = client.get_workflow_handle(inbound_workflow_id(transfer_id))
    deadline = time.monotonic() + 30
    while (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        assert time.monotonic() < deadline, f"transfer {transfer_id} did not end"
        await asyncio.sleep(0.02)
    events = (await handle.fetch_history()).events
    signaled = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    completed = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    return completed.event_time.ToDatetime().timestamp() - signaled.event_time.ToDatetime().timestamp()


async def run(rounds: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-confirm-"))
    procs: list[Proc] = []

    async def start(proc: Proc) -> None:
        procs.append(proc)
        await proc.start()

    try:
        temporal_port = free_port()
        argv = [
            str(BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(temporal_port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(data_dir / "temporal.db"), "--log-level", "warn",
        ]  # fmt: skip
        argv += dev_server_flags(Settings())  # as `make run`: MOJAFLOW_TEMPORAL_SQLITE_PRAGMAS applies
        await start(Proc("temporal", argv, log_path=data_dir / "temporal.log", ready=tcp_open(temporal_port)))
        sdk_port, cbs_port = free_port(), free_port()
        for name, module, port in (("sdk-sim", "simulators.sdk", sdk_port), ("cbs-sim", "simulators.cbs", cbs_port)):
            argv = [sys.executable, "-m", module, "--port", str(port), "--data-dir", str(data_dir / name)]
            ready = http_ok(f"http://127.0.0.1:{port}/health")
            await start(Proc(name, argv, log_path=data_dir / f"{name}.log", ready=ready, cwd=str(ROOT)))
        env = {
            "MOJAFLOW_DATA_DIR": str(data_dir / "mojaflow"),
            "MOJAFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "MOJAFLOW_TASK_QUEUE": f"confirm-{uuid.uuid4()}",
            "MOJAFLOW_PAYLOAD_KEY": base64.b64encode(os.urandom(32)).decode(),
            "MOJAFLOW_PARTY_HASH_KEY": base64.b64encode(os.urandom(32)).decode(),
            "MOJAFLOW_SECRETS_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
            "MOJAFLOW_SDK_URL": f"http://127.0.0.1:{sdk_port}",
            "MOJAFLOW_CBS_URL": f"http://127.0.0.1:{cbs_port}",
        }
        (data_dir / "mojaflow").mkdir()
        backends: dict[str, str] = {}
        for confirm in ("true", "false"):
            client_port, backend_port = free_port(), free_port()
            own = {
                **env,
                "MOJAFLOW_INBOUND_CONFIRM_COMMIT": confirm,
                "MOJAFLOW_CLIENT_API_PORT": str(client_port),
                "MOJAFLOW_BACKEND_API_PORT": str(backend_port),
            }
            ready = http_ok(f"http://127.0.0.1:{client_port}/openapi.json")
            name = f"api-confirm-{confirm}"
            await start(Proc(name, [sys.executable, "-m", "api"], env=own, cwd=str(ROOT),
                             log_path=data_dir / f"{name}.log", ready=ready))  # fmt: skip
            backends[confirm] = f"http://127.0.0.1:{backend_port}"
        ready = http_ok(f"http://127.0.0.1:{client_port}/health")  # healthy once a worker polls
        await start(Proc("worker", [sys.executable, "worker.py"], env=env, cwd=str(ROOT),
                         log_path=data_dir / "worker.log", ready=ready))  # fmt: skip

        client = await Client.connect(f"127.0.0.1:{temporal_port}")
        sdk_url = f"http://127.0.0.1:{sdk_port}"
        seconds: dict[str, list[float]] = {"true": [], "false": []}
        async with httpx.AsyncClient(timeout=60) as http:
            for confirm in ("true", "false", "true", "false"):  # warm-up, not counted
                await one_transfer(http, client, backends[confirm], sdk_url)
            for _ in range(rounds):
                for confirm in ("true", "false"):
                    seconds[confirm].append(await one_transfer(http, client, backends[confirm], sdk_url))
        for confirm, label in (("true", "confirm on "), ("false", "confirm off")):
            values = sorted(seconds[confirm])
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"{label}: median {statistics.median(values) * 1000:6.1f} ms, p90 {p90 * 1000:6.1f} ms (n={rounds})")
        added = statistics.median(seconds["true"]) - statistics.median(seconds["false"])
        print(f"added by the confirmation (median on − median off): {added * 1000:.1f} ms")
    finally:
        for proc in reversed(procs):
            proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="transfers of each kind")
    asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    main()
