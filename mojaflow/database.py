"""The app database: what must outlive Temporal's retention period.

* `transfers`: the latest saved state of every transfer (outbound and inbound), so `GET /transfers/...` answers
  after the workflow history is gone, and the back office can list and filter them.
* `idempotency_keys`: (client_key, method, route, key) → the transfer it names, with a hash of the body.
* `inbound_quotes`: the quotes we gave the SDK, so an inbound transfer can be checked against its quote.
* `api_keys`: the client API's keys by their public id, each stored as an HMAC only (`mojaflow.api_keys`).
* `audit_log`: who decided what and when (append-only: the database refuses UPDATE and DELETE on it).

SQLite (WAL) in the data dir by default, its file 0600; PostgreSQL by `MOJAFLOW_DATABASE_URL`. SQLAlchemy 2 Core,
async. Personal data (names, party ids, accounts) is stored only sealed with the secrets ring
(`mojaflow.personal_data`): a Database given no ring stores none and reads none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mojaflow.keys import KeyRing
from mojaflow.models import TransferRecord, TransferView
from mojaflow.personal_data import Sealer, seal_quote, seal_transfer, unseal_quote, unseal_transfer

if TYPE_CHECKING:
    from mojaflow.webhook_outbox_rows import EventDefaults, PendingDelivery

__all__ = [
    "Database",
    "IdempotencyClaim",
    "StoredTransfer",
    "TransferSaved",
    "metadata",
]

metadata = MetaData()
Result = TypeVar("Result")

transfers = Table(
    "transfers",
    metadata,
    Column("transfer_id", String(64), primary_key=True),
    Column("direction", String(8), nullable=False),
    Column("workflow_id", String(200), nullable=False),
    Column("client_key", String(16)),
    Column("home_transaction_id", String(128)),
    Column("sdk_transfer_id", String(64)),
    Column("current_state", String(40), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("resource", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_transfers_home_transaction_id", "home_transaction_id"),
    Index("ix_transfers_sdk_transfer_id", "sdk_transfer_id"),
    Index("ix_transfers_listing", "direction", "current_state", "created_at"),
    Index("ix_transfers_created", "created_at", "transfer_id"),
    Index("ix_transfers_client", "client_key", "created_at", "transfer_id"),  # a client's own listing
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_key", String(16), primary_key=True),
    Column("method", String(8), primary_key=True),
    Column("route", String(64), primary_key=True),
    Column("idempotency_key", String(64), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("transfer_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

inbound_quotes = Table(
    "inbound_quotes",
    metadata,
    Column("quote_id", String(64), primary_key=True),
    Column("transaction_id", String(64)),
    Column("quote", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),  # the key's public part (`mf_<key_id>_<secret>`)
    Column("client_key", String(16), nullable=False),
    Column("name", String(100)),
    Column("operator", Boolean, nullable=False),
    Column("key_hash", String(64), nullable=False),  # HMAC-SHA256 of the whole key, under a key derived from
    Column("hash_key_id", String(64), nullable=False),  # this key of the secrets ring
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(80), nullable=False),  # `api_key:<key_id>`, a token's subject, or `cli`
    Column("client_key", String(16)),
    Column("action", String(40), nullable=False),
    Column("transfer_id", String(64)),
    Column("detail", String(200)),  # the outcome; never personal data
    Index("ix_audit_log_transfer_id", "transfer_id"),
)


@dataclass(frozen=True)
class TransferSaved:
    applied: bool  # the state was newer than the saved one
    deliveries: tuple[PendingDelivery, ...] = ()  # the webhook deliveries this save wrote, to be started
    rerun: bool = False  # its event was there already: deliveries of a first run may wait to be started

    @property
    def deliveries_waiting(self) -> bool:
        return self.rerun or bool(self.deliveries)


@dataclass(frozen=True)
class StoredTransfer:
    view: TransferView
    workflow_id: str
    client_key: str | None
    revision: int


class IdempotencyClaim:
    """The outcome of claiming an idempotency key: whether we created it, and the transfer it names."""

    def __init__(self, *, created: bool, transfer_id: str, request_hash: str) -> None:
        self.created = created
        self.transfer_id = transfer_id
        self.request_hash = request_hash


def _insert_for(engine: AsyncEngine) -> Any:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


class Database:
    """Async access to the app database; one instance per process, built from the URL."""

    def __init__(self, url: str, *, secrets: KeyRing | None = None) -> None:
        # A pre-ping (a `SELECT 1` at each checkout) finds PostgreSQL connections a restart or a proxy dropped; a
        # SQLite file has no server to drop them, and the ping is a quarter of a save's CPU there.
        self.engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        self.sealer = Sealer(secrets) if secrets is not None else None
        self._sqlite_file: Engine | None = None
        self._sqlite_threads: ThreadPoolExecutor | None = None
        if self.engine.dialect.name == "sqlite":
            _private_file(self.engine.url.database)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if _is_file(self.engine.url.database):
                # aiosqlite makes each DB-API call (cursor, execute, fetch, close, commit) a hop to its thread and
                # back through the event loop: half of a save's CPU. `transaction` runs on a plain pysqlite engine
                # on the same file instead, the whole transaction in one hop to a thread.
                self._sqlite_file = create_engine(self.engine.url.set(drivername="sqlite"))
                event.listen(self._sqlite_file, "connect", _sqlite_pragmas)
                # Threads of its own: a transaction waiting for SQLite's write lock (busy_timeout) never holds up
                # the event loop's default executor (name resolution, other `to_thread` work).
                self._sqlite_threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sqlite")
        self._insert = _insert_for(self.engine)
        # Built once: the hot path (a save per state change) then only binds values to a cached compilation.
        upsert = self._insert(transfers)
        self._upsert_transfer = upsert.on_conflict_do_update(
            index_elements=[transfers.c.transfer_id],
            set_={
                column.name: upsert.excluded[column.name]
                for column in transfers.columns
                if column.name not in ("transfer_id", "created_at")
            },
            where=transfers.c.revision < upsert.excluded.revision,
        )
        # The save writes its webhook event in its own transaction (the outbox). Imported here: that module needs
        # this one's tables loaded first.
        from mojaflow.webhook_outbox_rows import EventDefaults, EventWriter

        self._events = EventWriter(self._insert)
        self._event_defaults = EventDefaults()  # the settings' defaults; `Outbox.save` passes the configured ones

    def insert(self, table: Table) -> Any:
        """An INSERT of this database's dialect, with its `on_conflict_do_nothing` / `on_conflict_do_update`."""
        return self._insert(table)

    async def create_schema(self) -> None:
        """Bring the schema to the newest migration (`migrations/`). Several processes may race here on a new
        database: the loser retries and finds nothing left to do. Within a process, one at a time: Alembic's
        context is global."""
        async with _MIGRATION_LOCK:
            await self._upgrade()

    async def _upgrade(self) -> None:
        for attempt in range(3):
            try:
                async with self.engine.begin() as connection:
                    await connection.run_sync(_upgrade_to_head)
                return
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == 2:
                    raise

    async def close(self) -> None:
        if self._sqlite_threads is not None:
            self._sqlite_threads.shutdown(wait=False, cancel_futures=True)
        await self.engine.dispose()
        if self._sqlite_file is not None:
            self._sqlite_file.dispose()

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine that runs this database's statements (to listen to their events): the async engine's, and
        on a SQLite file the one `transaction` uses."""
        return (self.engine.sync_engine,) + ((self._sqlite_file,) if self._sqlite_file is not None else ())

    async def transaction(self, work: Callable[[Connection], Result]) -> Result:
        """`work`'s statements in one transaction, committed when it returns, rolled back if it raises: for the
        hot path (a state save, a sent request's claim, an idempotency key's, a transfer read by id). On a SQLite
        file in one hop to a thread (see __init__), where once started it runs to its end even if the caller is
        cancelled (so `work` must be idempotent, like every save here); otherwise on the async engine."""
        if self._sqlite_threads is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._sqlite_threads, self._in_sqlite_transaction, work
            )
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    def _in_sqlite_transaction(self, work: Callable[[Connection], Result]) -> Result:
        assert self._sqlite_file is not None
        with self._sqlite_file.begin() as connection:
            return work(connection)

    # -- transfers -----------------------------------------------------------------------------------

    async def save_transfer(self, record: TransferRecord) -> bool:
        """Insert or update a transfer's state unless a newer revision is already saved, with its webhook event
        (`save_transfer_with_event`; the deliveries are left to a sweeper). Idempotent. True if it was newer."""
        return (await self.save_transfer_with_event(record)).applied

    async def save_transfer_with_event(
        self, record: TransferRecord, defaults: EventDefaults | None = None, *, dispatching: bool = False
    ) -> TransferSaved:
        """The state upsert and, in the same transaction, its webhook event and deliveries (the outbox's rows:
        mojaflow/webhook_outbox_rows.py; `Outbox.save` then starts them). `dispatching`: the caller dispatches the
        deliveries itself, so they are written claimed. Idempotent: a re-run writes nothing."""
        view = record.view
        now = datetime.now(UTC)
        values = {
            "transfer_id": view.transfer_id,
            "direction": view.direction.value,
            "workflow_id": record.workflow_id,
            "client_key": record.client_key,
            "home_transaction_id": view.home_transaction_id,
            "sdk_transfer_id": view.sdk_transfer_id,
            "current_state": view.current_state.value,
            "revision": record.revision,
            "resource": seal_transfer(view.model_dump(mode="json", by_alias=True), self.sealer),
            "created_at": now,
            "updated_at": now,
        }

        def save(connection: Connection) -> tuple[bool, list[PendingDelivery] | None]:
            applied = bool(connection.execute(self._upsert_transfer, values).rowcount)
            written = self._events.write(connection, record, defaults or self._event_defaults, now, dispatching)
            return applied, written

        applied, written = await self.transaction(save)
        return (
            TransferSaved(applied, tuple(written), rerun=False)
            if written is not None
            else TransferSaved(applied, rerun=True)
        )

    async def get_transfer(self, transfer_id: str) -> TransferView | None:
        """By our transferId, or by the SDK's (outbound) / Mojaloop's (inbound) transferId."""
        stored = await self.find_transfer(transfer_id)
        return stored.view if stored else None

    async def find_transfer(self, transfer_id: str) -> StoredTransfer | None:
        """The saved resource with its workflow id and owner, by our transferId or the SDK's."""
        query = select(
            transfers.c.resource, transfers.c.workflow_id, transfers.c.client_key, transfers.c.revision
        ).where((transfers.c.transfer_id == transfer_id) | (transfers.c.sdk_transfer_id == transfer_id))
        row = await self.transaction(lambda connection: connection.execute(query.limit(1)).first())
        if row is None:
            return None
        return StoredTransfer(
            view=TransferView.model_validate(unseal_transfer(row.resource, self.sealer)),
            workflow_id=row.workflow_id,
            client_key=row.client_key,
            revision=row.revision,
        )

    async def list_transfers(
        self,
        *,
        direction: str | None = None,
        state: str | None = None,
        home_transaction_id: str | None = None,
        client_key: str | None = None,
        limit: int = 50,
        after: tuple[datetime, str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> Sequence[tuple[TransferView, datetime]]:
        """Newest first; `after` is the (created_at, transfer_id) of the last row of the previous page;
        `client_key`: that client's transfers only; received from `created_from` (inclusive) to `created_to`
        (exclusive)."""
        query = select(transfers.c.resource, transfers.c.created_at, transfers.c.transfer_id)
        if created_from is not None:  # in UTC: SQLite compares the stored UTC times as text
            query = query.where(transfers.c.created_at >= created_from.astimezone(UTC))
        if created_to is not None:
            query = query.where(transfers.c.created_at < created_to.astimezone(UTC))
        if client_key is not None:
            query = query.where(transfers.c.client_key == client_key)
        if direction:
            query = query.where(transfers.c.direction == direction)
        if state:
            query = query.where(transfers.c.current_state == state)
        if home_transaction_id:
            query = query.where(transfers.c.home_transaction_id == home_transaction_id)
        if after:
            created_at, transfer_id = after
            query = query.where(
                (transfers.c.created_at < created_at)
                | ((transfers.c.created_at == created_at) & (transfers.c.transfer_id < transfer_id))
            )
        query = query.order_by(transfers.c.created_at.desc(), transfers.c.transfer_id.desc()).limit(limit)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            (TransferView.model_validate(unseal_transfer(row.resource, self.sealer)), row.created_at) for row in rows
        ]

    # -- idempotency ---------------------------------------------------------------------------------

    async def claim_idempotency_key(
        self, *, client_key: str, method: str, route: str, key: str, request_hash: str, transfer_id: str
    ) -> IdempotencyClaim:
        """Bind the key to this body and transfer, or return what it is bound to. Concurrent claims: exactly one
        wins. A key is never freed: a claim says "this body", not "done" (a decision's outcome is the workflow's
        record, `TransferView.decisions`), so a retry can always tell a replay from another request."""
        statement = (
            self._insert(idempotency_keys)
            .values(
                client_key=client_key,
                method=method,
                route=route,
                idempotency_key=key,
                request_hash=request_hash,
                transfer_id=transfer_id,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        bound = select(idempotency_keys.c.transfer_id, idempotency_keys.c.request_hash).where(
            (idempotency_keys.c.client_key == client_key)
            & (idempotency_keys.c.method == method)
            & (idempotency_keys.c.route == route)
            & (idempotency_keys.c.idempotency_key == key)
        )

        def claim(connection: Connection) -> IdempotencyClaim:
            if connection.execute(statement).rowcount:
                return IdempotencyClaim(created=True, transfer_id=transfer_id, request_hash=request_hash)
            row = connection.execute(bound).one()
            return IdempotencyClaim(created=False, transfer_id=row.transfer_id, request_hash=row.request_hash)

        return await self.transaction(claim)

    # -- inbound quotes ------------------------------------------------------------------------------

    async def save_quote(self, quote_id: str, transaction_id: str | None, quote: dict[str, Any]) -> None:
        """Save (or replace, when the SDK asks again) the quote we answered for `quote_id`."""
        statement = self._insert(inbound_quotes).values(
            quote_id=quote_id,
            transaction_id=transaction_id,
            quote=seal_quote(quote_id, quote, self.sealer),
            created_at=datetime.now(UTC),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[inbound_quotes.c.quote_id],
            set_={"quote": statement.excluded.quote, "transaction_id": statement.excluded.transaction_id},
        )
        await self.transaction(lambda connection: connection.execute(statement))

    async def get_quote(self, quote_id: str) -> dict[str, Any] | None:
        query = select(inbound_quotes.c.quote).where(inbound_quotes.c.quote_id == quote_id)
        row = await self.transaction(lambda connection: connection.execute(query).first())
        return unseal_quote(quote_id, dict(row.quote), self.sealer) if row else None


MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_LOCK = asyncio.Lock()


def _upgrade_to_head(connection: Connection) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    alembic_command.upgrade(config, "head")


def _is_file(database: str | None) -> bool:
    return database is not None and database not in ("", ":memory:") and not database.startswith("file:")


def _private_file(database: str | None) -> None:
    """The SQLite file holds sealed personal data and hashes: created 0600 like our keys (its -wal and -shm files
    take its mode), and an older, wider one is narrowed.

    Never open an existing file here: closing any descriptor of it drops every POSIX lock this process holds on it,
    those of its open SQLite connections included, and another process closing its last connection would then
    delete the WAL under them (writes lost). Only a file that does not exist yet is created, and chmod takes no
    descriptor."""
    if database is None or not _is_file(database):
        return
    path = Path(database)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process made it first
            pass
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; busy_timeout makes concurrent writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# The webhook, sweeper and sent-request tables live in modules of their own on this `metadata`; importing them
# here registers them wherever the database is used (migrations, the schema test), whichever module comes first.
from mojaflow import sent_requests as _sent_requests  # noqa: E402,F401
from mojaflow import sweeper_tables as _sweeper_tables  # noqa: E402,F401
from mojaflow import webhook_tables as _webhook_tables  # noqa: E402,F401
