"""The outbox's rows, on SQLite and PostgreSQL: what one save writes in its transaction, what it costs, and who
may claim its deliveries.

Subscriptions are made by the subscriptions' own store (mojaflow/webhook_subscriptions.py); the rows are read back
as they are stored. The end-to-end checks (workflows, crash, outage) are tests/workflows/test_webhook_outbox.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import event, select

from mojaflow.database import Database
from mojaflow.models import Direction, TransferError, TransferRecord, TransferState, TransferView
from mojaflow.settings import Settings
from mojaflow.webhook_dispatch import claim, mark_dispatched
from mojaflow.webhook_models import EVENT_TYPE, DeliveryBatch, DeliveryItem, batch_workflow_id, delivery_id, event_id
from mojaflow.webhook_outbox_rows import EventDefaults
from mojaflow.webhook_subscription_models import SubscriptionCreate
from mojaflow.webhook_subscriptions import create_subscription, delete_subscription
from mojaflow.webhook_tables import webhook_deliveries, webhook_events

S = TransferState


def _record(
    transfer_id: str, state: TransferState, revision: int, previous: TransferState | None, *,
    client_key: str | None = "bank1", direction: Direction = Direction.OUTBOUND, **fields: Any,
) -> TransferRecord:  # fmt: skip
    view = TransferView(
        transfer_id=transfer_id, direction=direction, home_transaction_id=f"home-{transfer_id[:8]}",
        current_state=state, currency="USD", amount="10", **fields,
    )  # fmt: skip
    return TransferRecord(
        view=view, revision=revision, workflow_id=f"wf-{transfer_id}", client_key=client_key, previous_state=previous,
        product="retail_payments" if direction is Direction.OUTBOUND else None,
        payment_channel="pos" if direction is Direction.OUTBOUND else None,
    )  # fmt: skip


async def _subscribe(database: Database, client_key: str, **fields: Any) -> str:
    body = {"url": "https://hooks.example.com/in", "eventTypes": [EVENT_TYPE], **fields}
    body["auth"] = {"type": "basic", "username": "hook", "password": "not-a-real-one"}
    return (await create_subscription(database, client_key, SubscriptionCreate.model_validate(body))).subscription_id


async def _rows(database: Database, table: Any, transfer_id: str) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(select(table).where(table.c.transfer_id == transfer_id))).all())


class Statements:
    """Every SQL statement the database's engine sends, as the driver gets it."""

    def __init__(self, database: Database) -> None:
        self.sent: list[str] = []
        for engine in database.engines:
            event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(" ".join(statement.split()))


async def test_without_a_subscription_a_save_costs_one_statement_more(database: Database) -> None:
    """The state upsert and the event insert, nothing else: no statement on the deliveries, none to match
    subscriptions, nothing left to start. (Another client's subscription changes nothing.)"""
    await _subscribe(database, "other")
    transfer_id = str(uuid.uuid4())
    await database.save_transfer(_record(transfer_id, S.RECEIVED, 0, None))  # first use of the statements
    statements = Statements(database)

    saved = await database.save_transfer_with_event(_record(transfer_id, S.RESOLVING_PARTY, 1, S.RECEIVED))

    assert saved.applied and not saved.deliveries_waiting
    assert len(statements.sent) == 2, statements.sent
    assert "INSERT INTO transfers" in statements.sent[0]
    assert statements.sent[1].startswith("INSERT INTO webhook_events") and "RETURNING" in statements.sent[1]
    assert not await _rows(database, webhook_deliveries, transfer_id)
    assert [row.sequence for row in await _rows(database, webhook_events, transfer_id)] == [1, 2]


async def test_each_state_is_one_event_and_one_delivery_per_subscription_that_wants_it(database: Database) -> None:
    every = await _subscribe(database, "bank1")
    completed_only = await _subscribe(database, "bank1", states=["COMPLETED"])
    await _subscribe(database, "bank1", enabled=False)
    await _subscribe(database, "bank2")
    deleted = await _subscribe(database, "bank1")
    assert await delete_subscription(database, deleted) == []
    transfer_id = str(uuid.uuid4())
    error = TransferError(code="transfer_aborted", message="the switch aborted the transfer")

    first = await database.save_transfer_with_event(_record(transfer_id, S.RECEIVED, 0, None))
    last = await database.save_transfer_with_event(_record(transfer_id, S.ABORTED, 1, S.RECEIVED, last_error=error))
    done = await database.save_transfer_with_event(_record(transfer_id, S.COMPLETED, 2, S.ABORTED))

    assert first.deliveries_waiting and last.deliveries_waiting and done.deliveries_waiting
    events = sorted(await _rows(database, webhook_events, transfer_id), key=lambda row: row.sequence)
    assert [(e.sequence, e.event_id) for e in events] == [(n, event_id(transfer_id, n)) for n in (1, 2, 3)]
    assert [e.data["previousState"] for e in events] == [None, "RECEIVED", "ABORTED"]
    assert [e.data["currentState"] for e in events] == ["RECEIVED", "ABORTED", "COMPLETED"]
    assert events[1].data["lastError"] == {
        "code": "transfer_aborted",
        "message": error.message,
        "fspiopErrorCode": None,
    }
    assert {(e.client_key, e.event_type, e.product, e.payment_channel) for e in events} == {
        ("bank1", EVENT_TYPE, "retail_payments", "pos")
    }
    deliveries = await _rows(database, webhook_deliveries, transfer_id)
    assert sorted((row.event_id, row.subscription_id) for row in deliveries) == sorted(
        [(e.event_id, every) for e in events] + [(events[2].event_id, completed_only)]
    )
    for row in deliveries:
        assert row.delivery_id == delivery_id(row.event_id, row.subscription_id)
        assert (row.status, row.cycle, row.attempts, row.dispatched_at) == ("PENDING", 1, 0, None)


async def test_a_rerun_or_a_late_save_writes_nothing(database: Database) -> None:
    """The same revision again (a retried local activity), or an older one late: no new event or delivery, the
    first write's occurredAt kept; the re-run says its deliveries may still wait (its first run may have died
    before starting them)."""
    await _subscribe(database, "bank1")
    transfer_id = str(uuid.uuid4())
    await database.save_transfer_with_event(_record(transfer_id, S.RECEIVED, 0, None))
    await database.save_transfer_with_event(_record(transfer_id, S.RESOLVING_PARTY, 1, S.RECEIVED))
    before = sorted(
        (e.event_id, e.occurred_at, e.data["currentState"]) for e in await _rows(database, webhook_events, transfer_id)
    )
    deliveries = sorted(row.delivery_id for row in await _rows(database, webhook_deliveries, transfer_id))

    rerun = await database.save_transfer_with_event(_record(transfer_id, S.RESOLVING_PARTY, 1, S.RECEIVED))
    late = await database.save_transfer_with_event(_record(transfer_id, S.RECEIVED, 0, None))

    assert not rerun.applied and rerun.deliveries_waiting
    assert not late.applied
    after = sorted(
        (e.event_id, e.occurred_at, e.data["currentState"]) for e in await _rows(database, webhook_events, transfer_id)
    )
    assert after == before and len(after) == 2
    assert sorted(row.delivery_id for row in await _rows(database, webhook_deliveries, transfer_id)) == deliveries


async def test_inbound_and_ownerless_records_take_the_defaults(database: Database) -> None:
    """An inbound transfer's first saved state (revision 1) is sequence 1; a record without owner or headers gets
    the bank's client_key and the inbound product and channel (from the settings, when the Outbox saves)."""
    bank = await _subscribe(database, "thebank")
    defaults = EventDefaults.of(
        Settings(default_client_key="thebank", inbound_product="business_payments", inbound_payment_channel="atm")
    )
    transfer_id = str(uuid.uuid4())
    record = _record(transfer_id, S.RECEIVED, 1, None, client_key=None, direction=Direction.INBOUND)

    await database.save_transfer_with_event(record, defaults)

    [row] = await _rows(database, webhook_events, transfer_id)
    assert (row.sequence, row.event_id) == (1, event_id(transfer_id, 1))
    assert (row.client_key, row.product, row.payment_channel) == ("thebank", "business_payments", "atm")
    assert row.data["direction"] == "INBOUND" and row.data["previousState"] is None
    [delivery] = await _rows(database, webhook_deliveries, transfer_id)
    assert (delivery.subscription_id, delivery.client_key) == (bank, "thebank")


async def test_only_rows_of_a_writer_that_does_not_dispatch_are_left_to_claim(database: Database) -> None:
    """A worker's save writes its deliveries claimed (they name the batch they would open); the client API's,
    which does not dispatch, unclaimed: those are the ones the dispatchers' rounds claim."""
    subscription = await _subscribe(database, "bank1")
    by_api, by_worker = str(uuid.uuid4()), str(uuid.uuid4())
    await database.save_transfer_with_event(_record(by_api, S.RECEIVED, 0, None))
    await database.save_transfer_with_event(_record(by_worker, S.RESOLVING_PARTY, 1, S.RECEIVED), dispatching=True)

    [api_row] = await _rows(database, webhook_deliveries, by_api)
    [worker_row] = await _rows(database, webhook_deliveries, by_worker)
    assert (api_row.workflow_id, api_row.dispatched_at) == (None, None)
    assert worker_row.dispatched_at is None
    assert worker_row.workflow_id == batch_workflow_id(event_id(by_worker, 2), subscription, 1)


async def test_a_delivery_is_claimed_by_one_dispatcher_only(database: Database) -> None:
    """Two dispatchers that found the same unclaimed deliveries claim them at once: each delivery goes to one of
    them, never both; a delivery claimed by its writer, or dispatched, is claimed by none."""
    subscription = await _subscribe(database, "bank1")
    unclaimed = [str(uuid.uuid4()) for _ in range(30)]
    for transfer_id in unclaimed:
        await database.save_transfer_with_event(_record(transfer_id, S.RECEIVED, 0, None))
    writers = str(uuid.uuid4())
    await database.save_transfer_with_event(_record(writers, S.RECEIVED, 0, None), dispatching=True)
    dispatched = str(uuid.uuid4())
    await database.save_transfer_with_event(_record(dispatched, S.RECEIVED, 0, None))
    [dispatched_row] = await _rows(database, webhook_deliveries, dispatched)
    item = _item(dispatched_row)
    await mark_dispatched(database, [DeliveryBatch(subscription_id=subscription, deliveries=[item])])

    found = [(subscription, _item(row)) for row in await _all_rows(database)]
    assert len(found) == 32
    first, second = await asyncio.gather(claim(database, found), claim(database, found))

    wanted = {delivery_id(event_id(transfer_id, 1), subscription) for transfer_id in unclaimed}
    assert not first & second
    assert first | second == wanted
    rows = {row.delivery_id: row for row in await _all_rows(database)}
    for claimed in wanted:  # each names the batch it would open
        assert rows[claimed].workflow_id == batch_workflow_id(rows[claimed].event_id, subscription, 1)
    assert await claim(database, found) == set()  # all taken now


def _item(row: Any) -> DeliveryItem:
    return DeliveryItem(delivery_id=row.delivery_id, event_id=row.event_id, transfer_id=row.transfer_id, cycle=1)


async def _all_rows(database: Database) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(select(webhook_deliveries))).all())
