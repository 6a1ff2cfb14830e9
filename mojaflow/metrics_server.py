"""Where the metrics are served: a worker's own port, Temporal's runtime metrics, the database's gauges.

* A worker (`MOJAFLOW_WORKER_METRICS_PORT`, unset: none) serves ONE page on that port: our metrics
  (mojaflow/metrics.py, prometheus-client's registry, with the process's) followed by the Temporal SDK's runtime
  metrics (`temporal_*`: workflow and activity task latencies, slots, polls, requests to Temporal). Temporal's core
  exports those only through its own Prometheus server (`PrometheusConfig`), so the worker runs that server on a
  private 127.0.0.1 port and appends its page, as it wrote it, to ours at each scrape. One port per worker to
  scrape and to open, and Temporal's names exactly as Temporal's documentation and dashboards use them; the cost
  is one local request per scrape. No credentials: it serves nothing personal, on 127.0.0.1 unless
  `MOJAFLOW_WORKER_METRICS_HOST` says (compose: its private network).
* The API serves our metrics on `GET /metrics` (api/metrics.py, operator key), with `DatabaseGauges`: transfers in
  progress by state (RECONCILING and SETTLING among them) and the age of the oldest, and the webhook deliveries
  waiting, and the latest stuck-transfer sweep's findings (mojaflow/sweeper_store.py), read from our database at
  the scrape. Every API process reads the same database: take `max`, not `sum`.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from mojaflow.database import Database, transfers
from mojaflow.models import FINAL_STATES, TransferState
from mojaflow.settings import Settings
from mojaflow.sweeper import FindingKind
from mojaflow.sweeper_store import SweepCounts, latest_counts
from mojaflow.webhook_models import DeliveryStatus
from mojaflow.webhook_tables import webhook_deliveries

__all__ = ["CONTENT_TYPE", "DatabaseGauges", "start_worker_metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the classic text format: Temporal's page is in it too
IN_PROGRESS = [state.value for state in TransferState if state not in FINAL_STATES]
# The states each direction goes through (workflows/), each shown even at 0: an alert finds a series that is there
_INBOUND = {"RECEIVED", "RESERVED", "RECONCILING", "SETTLING"}
SERIES = [("outbound", state) for state in IN_PROGRESS if state != "RESERVED"] + [
    ("inbound", state) for state in IN_PROGRESS if state in _INBOUND
]
WAITING_DELIVERIES = [DeliveryStatus.PENDING.value, DeliveryStatus.DELIVERING.value]

log = logging.getLogger("mojaflow.metrics")


def start_worker_metrics(settings: Settings) -> ThreadingHTTPServer | None:
    """Serve this worker's metrics on `MOJAFLOW_WORKER_METRICS_PORT` (None when unset), Temporal's included. Call it
    before the Temporal client is built: it makes the process's Temporal runtime (one per process). The server is a
    daemon thread: it ends with the process. Exits (SystemExit, one line) when the port is taken."""
    if settings.worker_metrics_port is None:
        return None
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    temporal_address = f"127.0.0.1:{_free_port()}"  # a private port; another process taking it meanwhile is rare
    handler = type("WorkerMetrics", (_MetricsHandler,), {"temporal_url": f"http://{temporal_address}/metrics"})
    try:  # before Temporal's runtime exists: a plain exit, one line naming the setting
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise SystemExit(
            f"mojaflow worker cannot start: MOJAFLOW_WORKER_METRICS_PORT: cannot listen on {host}:{port} "
            f"({error.strerror or error})"
        ) from None
    server.daemon_threads = True
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=temporal_address))))
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _MetricsHandler(BaseHTTPRequestHandler):
    temporal_url = ""

    def do_GET(self) -> None:  # http.server's name for it
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = generate_latest(REGISTRY) + _temporal_page(self.temporal_url)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # a scrape every few seconds: not worth a line
        pass


def _temporal_page(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # our own 127.0.0.1 URL
            page: bytes = response.read()
    except OSError as error:  # ours are still worth serving; Prometheus sees Temporal's go missing
        log.warning("Temporal's runtime metrics did not answer: %s", type(error).__name__)
        return b""
    return page if page.endswith(b"\n") or not page else page + b"\n"


class DatabaseGauges(Collector):
    """Gauges read from our database: call `refresh` (async) before each collection (api/metrics.py does)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._transfers: list[tuple[str, str, int, datetime | None]] = []
        self._deliveries: list[tuple[str, int, datetime | None]] = []
        self._sweep = SweepCounts(0, 0, None, complete=False)
        self._at = datetime.now(UTC)

    async def refresh(self) -> None:
        in_progress = (
            select(transfers.c.direction, transfers.c.current_state, func.count(), func.min(transfers.c.updated_at))
            .where(transfers.c.current_state.in_(IN_PROGRESS))
            .group_by(transfers.c.direction, transfers.c.current_state)
        )
        waiting = (
            select(webhook_deliveries.c.status, func.count(), func.min(webhook_deliveries.c.created_at))
            .where(webhook_deliveries.c.status.in_(WAITING_DELIVERIES))
            .group_by(webhook_deliveries.c.status)
        )
        async with self._db.engine.connect() as connection:
            found = [tuple(row) for row in await connection.execute(in_progress)]
            pending = [tuple(row) for row in await connection.execute(waiting)]
        self._transfers, self._deliveries = found, pending
        self._sweep = await latest_counts(self._db)
        self._at = datetime.now(UTC)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = GaugeMetricFamily(
            "mojaflow_transfers_in_progress",
            "Transfers in each state that is not final (RECONCILING, SETTLING...), from our database; 0 when none",
            labels=["direction", "state"],
        )
        oldest = GaugeMetricFamily(
            "mojaflow_transfers_in_progress_oldest_age_seconds",
            "How long the oldest transfer in each state has been in it (since its last saved state); 0 when none",
            labels=["direction", "state"],
        )
        found = {(direction.lower(), state): (number, since) for direction, state, number, since in self._transfers}
        for key in [*SERIES, *(key for key in found if key not in SERIES)]:
            number, since = found.get(key, (0, None))
            count.add_metric(list(key), number)
            oldest.add_metric(list(key), self._age(since))
        waiting = GaugeMetricFamily(
            "mojaflow_webhook_deliveries_waiting",
            "Webhook deliveries not yet delivered: PENDING (its workflow not started), DELIVERING (attempting, or "
            "waiting for the next hourly attempt)",
            labels=["status"],
        )
        waiting_oldest = GaugeMetricFamily(
            "mojaflow_webhook_deliveries_waiting_oldest_age_seconds",
            "Age of the oldest delivery in each waiting status (since its event)",
            labels=["status"],
        )
        found_deliveries = {status: (number, since) for status, number, since in self._deliveries}
        for status in WAITING_DELIVERIES:
            number, since = found_deliveries.get(status, (0, None))
            waiting.add_metric([status], number)
            waiting_oldest.add_metric([status], self._age(since))
        yield from (count, oldest, waiting, waiting_oldest, *self._sweeper_gauges())

    def _sweeper_gauges(self) -> Iterator[GaugeMetricFamily]:
        findings = GaugeMetricFamily(
            "mojaflow_sweeper_findings",
            "What the latest stuck-transfer sweep found: ORPHAN_HOLD (a hold still open at the CBS after its transfer "
            "ended, or of a transfer unknown to us), WORKFLOW_GONE (a transfer in progress whose workflow is gone)",
            labels=["kind"],
        )
        findings.add_metric([FindingKind.ORPHAN_HOLD.value], self._sweep.orphan_holds)
        findings.add_metric([FindingKind.WORKFLOW_GONE.value], self._sweep.workflows_gone)
        finished = self._sweep.finished_at
        yield findings
        yield GaugeMetricFamily(
            "mojaflow_sweeper_last_sweep_timestamp_seconds",
            "When the latest sweep finished (Unix time; 0: none yet): alert when it is older than a few intervals",
            value=finished.timestamp() if finished else 0.0,
        )
        yield GaugeMetricFamily(
            "mojaflow_sweeper_last_sweep_complete",
            "1 if both of the latest sweep's checks ran to their end; 0 if one could not run or stopped at its bound "
            "(the findings are then a lower bound)",
            value=1.0 if self._sweep.complete else 0.0,
        )

    def _age(self, since: datetime | None) -> float:
        if since is None:
            return 0.0
        if since.tzinfo is None:  # SQLite hands back naive UTC
            since = since.replace(tzinfo=UTC)
        return max(0.0, (self._at - since).total_seconds())
