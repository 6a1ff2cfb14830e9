"""How the transfer metrics count, against a real database (SQLite): a state is counted on the save that commits
its event, once, however often the save runs again (a retried local activity, a late save of an older state); the
database's gauges say what is in progress and what deliveries wait. End to end: tests/test_metrics.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from mojaflow.database import Database
from mojaflow.keys import KeyRing
from mojaflow.metrics_server import DatabaseGauges
from mojaflow.models import Direction, TransferError, TransferState
from mojaflow.settings import Settings
from mojaflow.webhook_outbox import Outbox
from mojaflow.webhook_subscription_models import SubscriptionCreate
from mojaflow.webhook_subscriptions import create_subscription
from tests.test_webhook_outbox_rows import _record

S = TransferState
CHANGES = "mojaflow_transfer_state_changes_total"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(
        f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}",
        secrets=KeyRing("MOJAFLOW_SECRETS_KEYS", (("k1", os.urandom(32)),)),
    )
    await database.create_schema()
    yield database
    await database.close()


def _count(state: str, error_code: str = "", direction: str = "outbound") -> float:
    labels = {"direction": direction, "state": state, "error_code": error_code}
    return REGISTRY.get_sample_value(CHANGES, labels) or 0.0


async def test_a_state_is_counted_once_however_often_it_is_saved(database: Database, tmp_path: Path) -> None:
    outbox = Outbox(database, None, Settings(data_dir=tmp_path))
    transfer = str(uuid.uuid4())
    received, holding = _count("RECEIVED"), _count("HOLDING_FUNDS")
    aborted = _count("ABORTED", "insufficient_funds")

    await outbox.save(_record(transfer, S.RECEIVED, 0, None))
    await outbox.save(_record(transfer, S.RECEIVED, 0, None))  # the same save again
    await outbox.save(_record(transfer, S.HOLDING_FUNDS, 1, S.RECEIVED))
    await outbox.save(_record(transfer, S.RECEIVED, 0, None))  # late: an older state
    failed = TransferError(code="insufficient_funds", message="the payer's funds do not cover it")
    await outbox.save(_record(transfer, S.ABORTED, 2, S.HOLDING_FUNDS, last_error=failed))
    await outbox.save(_record(transfer, S.ABORTED, 2, S.HOLDING_FUNDS, last_error=failed))

    assert (_count("RECEIVED") - received, _count("HOLDING_FUNDS") - holding) == (1, 1)
    assert _count("ABORTED", "insufficient_funds") - aborted == 1
    assert _count("ABORTED") == 0  # a failure is counted with its code only


async def test_the_database_gauges_say_what_is_in_progress_and_waiting(database: Database, tmp_path: Path) -> None:
    outbox = Outbox(database, None, Settings(data_dir=tmp_path))  # no Temporal: deliveries stay PENDING
    body = {"url": "https://hooks.example.com/in", "eventTypes": ["moneymovementservices.payment.status_updated"],
            "auth": {"type": "basic", "username": "hook", "password": "not-a-real-one"}}  # fmt: skip
    await create_subscription(database, "bank1", SubscriptionCreate.model_validate(body))
    gauges = DatabaseGauges(database)
    registry = CollectorRegistry()
    registry.register(gauges)
    for state in (S.RECONCILING, S.RECONCILING, S.SETTLING, S.COMPLETED):
        await outbox.save(_record(str(uuid.uuid4()), state, 3, S.TRANSFERRING))
    await outbox.save(_record(str(uuid.uuid4()), S.RESERVED, 2, S.RECEIVED, direction=Direction.INBOUND))

    await gauges.refresh()

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    in_progress = "mojaflow_transfers_in_progress"
    assert gauge(in_progress, direction="outbound", state="RECONCILING") == 2
    assert gauge(in_progress, direction="outbound", state="SETTLING") == 1
    assert gauge(in_progress, direction="outbound", state="TRANSFERRING") == 0
    assert gauge(in_progress, direction="inbound", state="RESERVED") == 1
    assert gauge(in_progress, direction="inbound", state="SETTLING") == 0
    assert gauge(in_progress, direction="outbound", state="COMPLETED") is None  # final: not in progress
    age = gauge("mojaflow_transfers_in_progress_oldest_age_seconds", direction="outbound", state="RECONCILING")
    assert age is not None and 0 <= age < 60
    assert gauge("mojaflow_webhook_deliveries_waiting", status="PENDING") == 5  # one per state saved: bank1's
    assert gauge("mojaflow_webhook_deliveries_waiting", status="DELIVERING") == 0
