"""The bare baseline of `make bench`: a Temporal workflow of three activities, each one HTTP call to the SDK
simulator, the same three calls `OutboundTransferWorkflow` makes (`POST /transfers`, `PUT {"acceptParty": true}`,
`PUT {"acceptQuote": true}`). Default data converter, its own task queue. Two ways to run its worker:

- sandboxed (the default): default sandbox, default worker options, the plainest Temporal worker there is;
- `--fair`: the worker settings of ours (`worker.py`'s `build_worker`): unsandboxed, its slots, cache and pollers
  (`MOJAFLOW_WORKER_*`; by default 200 activity slots, the rest temporalio's defaults). With
  `BareTransfer.local_before_money` (the default), the two calls before the money step run as local activities,
  as ours do (ours claim each request in our database first: `mojaflow/sent_requests.py`); without it, all three
  are activities.

    python bench/baseline.py worker --address 127.0.0.1:7233 --task-queue bench-bare \
        --sdk-url http://127.0.0.1:4001 [--fair]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import httpx

__all__ = ["BareTransfer", "BareTransferWorkflow", "SdkCalls", "SdkStep"]

CALL = workflow.ActivityConfig(start_to_close_timeout=timedelta(seconds=90))
LOCAL_CALL = workflow.LocalActivityConfig(start_to_close_timeout=timedelta(seconds=90))


@dataclass
class BareTransfer:
    body: dict[str, Any]
    local_before_money: bool = True  # party lookup and party acceptance as local activities, as ours


@dataclass
class SdkStep:
    transfer_id: str
    state: str


class SdkCalls:
    """One HTTP call per activity; any error is raised and retried by Temporal's default policy."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _step(self, response: httpx.Response) -> SdkStep:
        response.raise_for_status()
        answer = response.json()
        return SdkStep(transfer_id=answer["transferId"], state=answer["currentState"])

    @activity.defn
    async def bare_request_party(self, body: dict[str, Any]) -> SdkStep:
        return await self._step(await self._http.post("/transfers", json=body))

    @activity.defn
    async def bare_accept_party(self, transfer_id: str) -> SdkStep:
        return await self._step(await self._http.put(f"/transfers/{transfer_id}", json={"acceptParty": True}))

    @activity.defn
    async def bare_accept_quote(self, transfer_id: str) -> SdkStep:
        return await self._step(await self._http.put(f"/transfers/{transfer_id}", json={"acceptQuote": True}))


@workflow.defn
class BareTransferWorkflow:
    @workflow.run
    async def run(self, transfer: BareTransfer) -> SdkStep:
        if transfer.local_before_money:
            party = await workflow.execute_local_activity_method(
                SdkCalls.bare_request_party, transfer.body, **LOCAL_CALL
            )
            quote = await workflow.execute_local_activity_method(
                SdkCalls.bare_accept_party, party.transfer_id, **LOCAL_CALL
            )
        else:
            party = await workflow.execute_activity_method(SdkCalls.bare_request_party, transfer.body, **CALL)
            quote = await workflow.execute_activity_method(SdkCalls.bare_accept_party, party.transfer_id, **CALL)
        return await workflow.execute_activity_method(SdkCalls.bare_accept_quote, quote.transfer_id, **CALL)


async def _serve(address: str, task_queue: str, sdk_url: str, fair: bool) -> None:
    import asyncio
    import signal

    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from mojaflow.settings import Settings
    from worker import transfer_worker_options

    client = await Client.connect(address)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)  # as worker.py's
    async with httpx.AsyncClient(base_url=sdk_url, timeout=65, limits=limits) as http:
        calls = SdkCalls(http)
        # As worker.py's build_worker (its MOJAFLOW_WORKER_* options, read from this process's environment): the
        # comparison is then between workflows, not worker settings.
        fair_options: dict[str, Any] = {
            "workflow_runner": UnsandboxedWorkflowRunner(),
            **transfer_worker_options(Settings()),
        }
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[BareTransferWorkflow],
            activities=[calls.bare_request_party, calls.bare_accept_party, calls.bare_accept_quote],
            **(fair_options if fair else {}),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with worker:
            await stop.wait()


def main(argv: list[str] | None = None) -> None:
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(prog="python bench/baseline.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run the baseline worker until SIGTERM")
    worker.add_argument("--address", required=True)
    worker.add_argument("--task-queue", required=True)
    worker.add_argument("--sdk-url", required=True)
    worker.add_argument("--fair", action="store_true", help="our worker settings: unsandboxed, MOJAFLOW_WORKER_*")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.address, args.task_queue, args.sdk_url, args.fair))


if __name__ == "__main__":
    # Run as a script: import ourselves as `bench.baseline`, so the sandbox can re-import the workflow's module.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import baseline

    baseline.main()
