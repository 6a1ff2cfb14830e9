"""The app database on both engines we support: SQLite (default) and PostgreSQL (by URL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from mojaflow.database import Database, metadata, transfers
from mojaflow.models import Direction, TransferRecord, TransferState, TransferView
from mojaflow.personal_data import seal_transfer


def _record(transfer_id: str, state: TransferState, revision: int, **view: object) -> TransferRecord:
    return TransferRecord(
        view=TransferView(
            transfer_id=transfer_id,
            direction=view.pop("direction", Direction.OUTBOUND),  # type: ignore[arg-type]
            current_state=state,
            currency="USD",
            amount="10",
            **view,  # type: ignore[arg-type]
        ),
        revision=revision,
        workflow_id=f"wf-{transfer_id}",
        client_key="bank1",
    )


async def test_a_late_save_never_goes_back_in_time(database: Database) -> None:
    transfer_id = str(uuid.uuid4())
    await database.save_transfer(_record(transfer_id, TransferState.RECEIVED, 0))
    await database.save_transfer(_record(transfer_id, TransferState.TRANSFERRING, 5, sdk_transfer_id="sdk-1"))

    stale = await database.save_transfer(_record(transfer_id, TransferState.HOLDING_FUNDS, 4))

    assert not stale
    saved = await database.find_transfer("sdk-1")
    assert saved is not None
    assert (saved.view.current_state, saved.revision, saved.workflow_id) == (
        TransferState.TRANSFERRING,
        5,
        f"wf-{transfer_id}",
    )


async def test_concurrent_claims_of_one_key_make_one_winner(database: Database) -> None:
    key = uuid.uuid4().hex

    async def claim(n: int) -> tuple[bool, str]:
        outcome = await database.claim_idempotency_key(
            client_key="bank1", method="POST", route="/transfers", key=key, request_hash="h", transfer_id=f"t{n}"
        )
        return outcome.created, outcome.transfer_id

    outcomes = await asyncio.gather(*(claim(n) for n in range(20)))

    assert sum(created for created, _ in outcomes) == 1
    assert len({transfer_id for _, transfer_id in outcomes}) == 1


async def test_list_filters_and_pages_newest_first(database: Database) -> None:
    home = uuid.uuid4().hex
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for transfer_id in ids:
        await database.save_transfer(_record(transfer_id, TransferState.COMPLETED, 1, home_transaction_id=home))
    await database.save_transfer(
        _record(str(uuid.uuid4()), TransferState.COMMITTED, 1, home_transaction_id=home, direction=Direction.INBOUND)
    )

    first = await database.list_transfers(direction="OUTBOUND", home_transaction_id=home, limit=3)
    last_view, last_created = first[-1]
    rest = await database.list_transfers(
        direction="OUTBOUND", home_transaction_id=home, limit=3, after=(last_created, last_view.transfer_id)
    )

    seen = [view.transfer_id for view, _ in [*first, *rest]]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    created = [created for _, created in [*first, *rest]]
    assert created == sorted(created, reverse=True)
    assert len(await database.list_transfers(state="COMMITTED", home_transaction_id=home)) == 1


async def test_quotes_are_saved_and_replaced_by_id(database: Database) -> None:
    quote_id = str(uuid.uuid4())
    await database.save_quote(quote_id, "tx-1", {"transferAmount": "10", "at": datetime.now(UTC).isoformat()})
    await database.save_quote(quote_id, "tx-1", {"transferAmount": "12"})

    saved = await database.get_quote(quote_id)

    assert saved is not None and saved["transferAmount"] == "12"
    assert await database.get_quote(str(uuid.uuid4())) is None


async def test_the_migrations_build_exactly_the_schema_the_code_uses(database: Database) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with database.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_migrating_again_changes_nothing(database: Database) -> None:
    await database.create_schema()  # every process does this at start-up
    transfer_id = str(uuid.uuid4())
    assert await database.save_transfer(_record(transfer_id, TransferState.RECEIVED, 0))


async def test_a_transaction_commits_all_its_statements_or_none(database: Database) -> None:
    """The hot path's transactions (`Database.transaction`: on SQLite through their own engine, in a thread)."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    def half_done(connection: Connection) -> None:
        connection.execute(database.insert(transfers).values(**_row(database, first)))
        raise RuntimeError("the second statement never came")

    with pytest.raises(RuntimeError):
        await database.transaction(half_done)
    await database.transaction(
        lambda connection: connection.execute(database.insert(transfers).values(**_row(database, second)))
    )

    assert await database.get_transfer(first) is None
    saved = await database.get_transfer(second)
    assert saved is not None and saved.current_state == TransferState.RECEIVED


def _row(database: Database, transfer_id: str) -> dict[str, object]:
    view = _record(transfer_id, TransferState.RECEIVED, 0).view
    now = datetime.now(UTC)
    resource = seal_transfer(view.model_dump(mode="json", by_alias=True), database.sealer)
    return {"transfer_id": transfer_id, "direction": view.direction.value, "workflow_id": f"wf-{transfer_id}",
            "current_state": view.current_state.value, "revision": 0, "resource": resource, "created_at": now,
            "updated_at": now}  # fmt: skip
