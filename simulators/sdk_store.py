"""SQLite persistence of the SDK simulator: transfer records, the fake switch's ledger and the fault switch.

The SDK keeps each transfer as one JSON record (in Redis, `transferModel_out_<id>`); we keep the same record plus
what only the simulator knows: how many prepares were sent, the fulfilment the fake payee will reveal, how many
party lookups and party acceptances arrived per payer `homeTransactionId` (counted on arrival, so also those
still in flight or whose transfer was never made). The
switch table is the switch's own view of transfers, independent of the SDK's records, so it can also hold inbound
transfers the simulator never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators._common import open_db
from simulators.sdk_models import FaultSpec

__all__ = ["ARRIVING_REQUESTS", "SdkStore", "StoredTransfer", "SwitchEntry"]

# The requests counted on arrival: `POST /transfers` and the `acceptParty` PUT (by their `/_sim` names).
ARRIVING_REQUESTS = ("partyLookups", "partyAcceptances")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY,
    home_transaction_id TEXT NOT NULL,
    record TEXT NOT NULL,
    prepare_count INTEGER NOT NULL DEFAULT 0,
    fulfilment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_home ON transfers (home_transaction_id);
CREATE TABLE IF NOT EXISTS switch (
    transfer_id TEXT PRIMARY KEY,
    transfer_state TEXT NOT NULL,
    completed_timestamp TEXT NOT NULL,
    fulfilment TEXT
);
CREATE TABLE IF NOT EXISTS arrivals (
    home_transaction_id TEXT NOT NULL,
    request TEXT NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (home_transaction_id, request)
);
CREATE TABLE IF NOT EXISTS faults (
    home_transaction_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredTransfer:
    """One outbound transfer: the SDK's record plus simulator-only bookkeeping."""

    transfer_id: str
    home_transaction_id: str
    record: dict[str, Any]
    prepare_count: int
    fulfilment: str


@dataclass(frozen=True)
class SwitchEntry:
    """The switch's view of one transfer."""

    transfer_state: str
    completed_timestamp: str
    fulfilment: str | None


class SdkStore:
    """Synchronous, fast SQLite access; called from the event loop, never across an `await`."""

    def __init__(self, data_dir: Path) -> None:
        self._db = open_db(data_dir / "sdk-simulator.sqlite3")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def insert_transfer(
        self, transfer_id: str, home_transaction_id: str, record: dict[str, Any], fulfilment: str
    ) -> None:
        self._db.execute(
            "INSERT INTO transfers (transfer_id, home_transaction_id, record, fulfilment) VALUES (?, ?, ?, ?)",
            (transfer_id, home_transaction_id, json.dumps(record), fulfilment),
        )

    def get_transfer(self, transfer_id: str) -> StoredTransfer | None:
        row = self._db.execute("SELECT * FROM transfers WHERE transfer_id = ?", (transfer_id,)).fetchone()
        if row is None:
            return None
        return StoredTransfer(
            transfer_id=row["transfer_id"],
            home_transaction_id=row["home_transaction_id"],
            record=json.loads(row["record"]),
            prepare_count=row["prepare_count"],
            fulfilment=row["fulfilment"],
        )

    def list_transfers(self) -> list[tuple[StoredTransfer, str | None]]:
        """Every transfer the simulator made, oldest first, with the switch's state of it (None: never asked)."""
        rows = self._db.execute(
            "SELECT transfers.*, switch.transfer_state FROM transfers "
            "LEFT JOIN switch ON switch.transfer_id = transfers.transfer_id ORDER BY transfers.rowid"
        ).fetchall()
        return [
            (
                StoredTransfer(
                    transfer_id=row["transfer_id"],
                    home_transaction_id=row["home_transaction_id"],
                    record=json.loads(row["record"]),
                    prepare_count=row["prepare_count"],
                    fulfilment=row["fulfilment"],
                ),
                row["transfer_state"],
            )
            for row in rows
        ]

    def save_record(self, transfer_id: str, record: dict[str, Any]) -> None:
        self._db.execute("UPDATE transfers SET record = ? WHERE transfer_id = ?", (json.dumps(record), transfer_id))

    def count_prepare(self, transfer_id: str) -> int:
        """Record that the SDK sent one more prepare for this transfer; returns the new count."""
        row = self._db.execute(
            "UPDATE transfers SET prepare_count = prepare_count + 1 WHERE transfer_id = ? RETURNING prepare_count",
            (transfer_id,),
        ).fetchone()
        return int(row[0]) if row else 0

    def count_arrival(self, home_transaction_id: str, request: str) -> int:
        """Record that one more `request` (one of ARRIVING_REQUESTS) arrived for this payer; returns the new count."""
        row = self._db.execute(
            "INSERT INTO arrivals (home_transaction_id, request, received) VALUES (?, ?, 1) "
            "ON CONFLICT (home_transaction_id, request) DO UPDATE SET received = received + 1 RETURNING received",
            (home_transaction_id, request),
        ).fetchone()
        return int(row[0])

    def arrivals(self, home_transaction_id: str) -> dict[str, int]:
        """How many of each of ARRIVING_REQUESTS arrived for this payer (0 for none)."""
        rows = self._db.execute(
            "SELECT request, received FROM arrivals WHERE home_transaction_id = ?", (home_transaction_id,)
        ).fetchall()
        counted = {row["request"]: int(row["received"]) for row in rows}
        return {request: counted.get(request, 0) for request in ARRIVING_REQUESTS}

    def other_fulfilment(self, transfer_id: str) -> str | None:
        """The fulfilment of some other transfer the simulator made (None when there is none)."""
        row = self._db.execute(
            "SELECT fulfilment FROM transfers WHERE transfer_id != ? ORDER BY rowid DESC LIMIT 1", (transfer_id,)
        ).fetchone()
        return row["fulfilment"] if row else None

    def get_switch(self, transfer_id: str) -> SwitchEntry | None:
        row = self._db.execute("SELECT * FROM switch WHERE transfer_id = ?", (transfer_id,)).fetchone()
        if row is None:
            return None
        return SwitchEntry(row["transfer_state"], row["completed_timestamp"], row["fulfilment"])

    def set_switch(self, transfer_id: str, state: str, completed_timestamp: str, fulfilment: str | None) -> None:
        """Upsert the switch's state; an existing fulfilment is kept when none is given."""
        self._db.execute(
            "INSERT INTO switch (transfer_id, transfer_state, completed_timestamp, fulfilment) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (transfer_id) DO UPDATE SET transfer_state = excluded.transfer_state, "
            "completed_timestamp = excluded.completed_timestamp, "
            "fulfilment = COALESCE(excluded.fulfilment, switch.fulfilment)",
            (transfer_id, state, completed_timestamp, fulfilment),
        )

    def get_faults(self, home_transaction_id: str) -> FaultSpec:
        row = self._db.execute(
            "SELECT spec FROM faults WHERE home_transaction_id = ?", (home_transaction_id,)
        ).fetchone()
        return FaultSpec.model_validate_json(row["spec"]) if row else FaultSpec()

    def set_faults(self, home_transaction_id: str, spec: FaultSpec) -> None:
        self._db.execute(
            "INSERT INTO faults (home_transaction_id, spec) VALUES (?, ?) "
            "ON CONFLICT (home_transaction_id) DO UPDATE SET spec = excluded.spec",
            (home_transaction_id, spec.model_dump_json(by_alias=True)),
        )

    def delete_faults(self, home_transaction_id: str) -> bool:
        cur = self._db.execute("DELETE FROM faults WHERE home_transaction_id = ?", (home_transaction_id,))
        return cur.rowcount > 0
