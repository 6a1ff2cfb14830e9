"""The mojaflow worker: runs the transfer workflows and their activities on our task queue, and the webhook
deliveries on theirs (`MOJAFLOW_WEBHOOK_TASK_QUEUE`), two Temporal workers in one process with their own slots, so
a dead receiver never takes a slot a transfer needs.

`python worker.py` (as `make run` does). Builds the Temporal client (encrypted pydantic data converter), one
`httpx.AsyncClient` per system (the webhooks' behind the SSRF guard), and the app database; stops cleanly on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.core_banking import CoreBankingActivities, CoreBankingClient
from activities.payment_manager import PaymentManagerActivities
from activities.sdk_accounts import AccountActivities
from activities.store import StoreActivities
from activities.sweeper import SweeperActivities
from activities.webhooks import WebhookActivities
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.log_context import TransferLogInterceptor
from mojaflow.logs import configure_logging
from mojaflow.metrics_server import start_worker_metrics
from mojaflow.retention import purge_in_background
from mojaflow.sent_requests import SentRequests
from mojaflow.settings import Settings
from mojaflow.sweeper import ensure_sweeper_schedule
from mojaflow.temporal import TemporalConnectError, connect, describe_connection
from mojaflow.tracing import Tracing
from mojaflow.url_guard import guarded_client
from mojaflow.webhook_outbox import Outbox
from workflows.account_registration import AccountRegistrationWorkflow
from workflows.inbound_transfer import InboundTransferWorkflow
from workflows.outbound_transfer import OutboundTransferWorkflow
from workflows.resolution import ResolutionWorkflow
from workflows.sweeper import SweeperWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

__all__ = [
    "TRANSFER_WORKFLOWS",
    "WEBHOOK_WORKFLOWS",
    "WORKFLOWS",
    "build_webhook_worker",
    "build_worker",
    "transfer_worker_options",
    "worker_resources",
    "workflow_runner",
]

TRANSFER_WORKFLOWS = [
    OutboundTransferWorkflow,
    InboundTransferWorkflow,
    AccountRegistrationWorkflow,
    ResolutionWorkflow,
    SweeperWorkflow,
]
WEBHOOK_WORKFLOWS = [WebhookDeliveryWorkflow]
WORKFLOWS = [*TRANSFER_WORKFLOWS, *WEBHOOK_WORKFLOWS]  # every workflow type we run (the replay tests take them all)

log = logging.getLogger("mojaflow.worker")


@asynccontextmanager
async def worker_resources(
    settings: Settings, client: Client | None = None, tracing: Tracing | None = None
) -> AsyncIterator[list[object]]:
    """The activity objects with their HTTP clients and database, closed on exit. Given the Temporal client, the
    saves start their webhook deliveries and the outbox's sweeper runs while the block does; without it, the
    saves write their events and deliveries only (some other worker's sweeper starts them). Given `tracing`, every
    request to the SDK, the CBS and webhook receivers is a span."""
    database = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))
    await database.create_schema()
    outbox = Outbox(database, client, settings)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with (
        httpx.AsyncClient(base_url=settings.sdk_url, timeout=settings.sdk_timeout_s, limits=limits) as sdk,
        httpx.AsyncClient(base_url=settings.cbs_url, timeout=settings.cbs_timeout_s, limits=limits) as cbs,
        _webhook_client(settings) as webhooks,
        outbox.sweeping(),
    ):
        if tracing is not None:
            tracing.instrument_client(sdk)
            tracing.instrument_client(cbs)
            tracing.instrument_client(webhooks, origin_only=True)  # a subscriber's URL path may be its secret
        try:
            yield [
                PaymentManagerActivities(sdk, sent=SentRequests(database)),
                AccountActivities(sdk),
                CoreBankingActivities(CoreBankingClient(cbs)),
                SweeperActivities(CoreBankingClient(cbs), database, grace_s=settings.sweeper_grace_s),
                StoreActivities(outbox),
                WebhookActivities(
                    webhooks,
                    database,
                    subscription_concurrency=settings.webhook_subscription_concurrency,
                    slot_wait_s=settings.webhook_timeout_s,  # a turn comes within one request's time, or BUSY
                ),
            ]
        finally:
            await database.close()


def _webhook_client(settings: Settings) -> httpx.AsyncClient:
    """Subscribers' URLs through the SSRF guard; a connection per attempt at most, so attempts never queue here."""
    slots = settings.webhook_max_concurrent_attempts
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=min(slots, 50))
    return guarded_client(settings.webhook_allowed_hosts, timeout=settings.webhook_timeout_s, limits=limits)


def _activity_methods(objects: list[object]) -> list[Callable[..., Any]]:
    return [
        getattr(instance, name)
        for instance in objects
        for name in dir(type(instance))
        if hasattr(getattr(type(instance), name), "__temporal_activity_definition")
    ]


def build_worker(client: Client, settings: Settings, activity_objects: list[object]) -> Worker:
    """The transfers' worker."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=TRANSFER_WORKFLOWS,
        activities=_activity_methods([o for o in activity_objects if not isinstance(o, WebhookActivities)]),
        workflow_runner=workflow_runner(sandboxed=settings.workflow_sandbox),
        interceptors=[TransferLogInterceptor()],  # the transferId on every log line of a transfer's work
        **transfer_worker_options(settings),
    )


def transfer_worker_options(settings: Settings) -> dict[str, Any]:
    """The transfers' worker's slots, sticky cache and pollers (`MOJAFLOW_WORKER_*`), as Temporal `Worker` options.
    Pollers as poller behaviours: the `max_concurrent_*_task_polls` options are deprecated for them."""
    return {
        "max_concurrent_workflow_tasks": settings.worker_max_concurrent_workflow_tasks,
        "max_concurrent_activities": settings.worker_max_concurrent_activities,
        "max_concurrent_local_activities": settings.worker_max_concurrent_local_activities,
        "max_cached_workflows": settings.worker_max_cached_workflows,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(maximum=settings.worker_workflow_task_pollers),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(maximum=settings.worker_activity_task_pollers),
    }


def build_webhook_worker(client: Client, settings: Settings, activity_objects: list[object], **options: Any) -> Worker:
    """The deliveries' worker, on their own task queue with their own slots. Each attempt is a local activity, so
    its slots are local-activity slots; `options` are Temporal `Worker` options on top (tests)."""
    slots = settings.webhook_max_concurrent_attempts
    config: dict[str, Any] = {
        "task_queue": settings.webhook_task_queue,
        "workflows": WEBHOOK_WORKFLOWS,
        "activities": _activity_methods([o for o in activity_objects if isinstance(o, WebhookActivities)]),
        "workflow_runner": workflow_runner(sandboxed=settings.workflow_sandbox),
        "max_concurrent_local_activities": slots,
        "max_concurrent_workflow_tasks": min(slots, 100),
        "no_remote_activities": True,  # attempts are local activities: no activity poller on this queue
        "interceptors": [TransferLogInterceptor()],
    }
    return Worker(client, **{**config, **options})


def workflow_runner(*, sandboxed: bool) -> WorkflowRunner:
    """The sandbox re-imports and proxies on every activation; it cost ~25 ms of CPU per transfer (bench/),
    a third of the worker's. So production runs our workflows unsandboxed, and the tests replay their
    histories through the sandbox (tests/workflows/test_replay.py): a non-deterministic call fails there."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    # Our own modules are deterministic or only imported for their models: passed through, not re-imported; so is
    # OpenTelemetry, whose tracing interceptor (mojaflow/tracing.py) runs inside workflows and reads its settings.
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "mojaflow", "activities", "pydantic", "httpx", "opentelemetry"
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("worker connecting to %s", describe_connection(settings))
    start_worker_metrics(settings)  # before the client: it sets up this process's Temporal runtime, with its metrics
    tracing = Tracing.from_settings(settings, service_name="mojaflow-worker")
    # the tracing interceptor on the client: both workers inherit it, outside TransferLogInterceptor
    client = await connect(settings, interceptors=tracing.client_interceptors() if tracing is not None else [])
    await _sweeper_schedule(client, settings)
    async with (
        worker_resources(settings, client, tracing) as activity_objects,
        purge_in_background(settings),
    ):
        worker = build_worker(client, settings, activity_objects)
        webhook_worker = build_webhook_worker(client, settings, activity_objects)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("worker polling task queues %s and %s", settings.task_queue, settings.webhook_task_queue)
        log.info(
            "transfers' worker: %d workflow-task slots, %d activity slots, %d local-activity slots, %d workflows "
            "cached, %d workflow-task pollers, %d activity pollers",
            settings.worker_max_concurrent_workflow_tasks, settings.worker_max_concurrent_activities,
            settings.worker_max_concurrent_local_activities, settings.worker_max_cached_workflows,
            settings.worker_workflow_task_pollers, settings.worker_activity_task_pollers,
        )  # fmt: skip
        async with worker, webhook_worker:
            await stop.wait()
        log.info("worker stopped")
    if tracing is not None:
        tracing.shutdown()  # the last spans out


async def _sweeper_schedule(client: Client, settings: Settings) -> None:
    """The stuck-transfer sweeper's Schedule (mojaflow/sweeper.py). Transfers do not need it: a worker that cannot
    make it says so and runs anyway."""
    try:
        outcome = await ensure_sweeper_schedule(client, settings)
    except RPCError as error:
        log.error("sweeper schedule %s not ensured: %s", settings.sweeper_schedule_id, error.status.name)
        return
    every = settings.sweeper_interval_s
    log.info("sweeper schedule %s %s (every %.0f s)", settings.sweeper_schedule_id, outcome, every)


def run() -> None:
    """A configuration Temporal refuses is one line naming the setting, and exit 1: no traceback to dig through."""
    try:
        asyncio.run(main())
    except TemporalConnectError as error:
        print(f"mojaflow worker cannot start: {error}", file=sys.stderr, flush=True)
        # Not sys.exit: the SDK's core runtime threads may still call into Python while the interpreter finalizes
        # after a refused connection ("Fatal Python error: PyGILState_Release", exit -6 instead of 1).
        os._exit(1)


if __name__ == "__main__":
    run()
