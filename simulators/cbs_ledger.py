"""The CBS simulator's ledger in SQLite: accounts, parties, outbound holds and inbound credit reservations.

Balances move only here, each change in one `BEGIN IMMEDIATE` transaction. Holds and reservations are
idempotent by their client key (`holdKey`, `reservationKey`): the same key with the same body returns the first
result; with another body it is an `idempotency_conflict`. Commit and release are idempotent too, and each moves
money at most once. Handlers call this synchronously on the event loop, so concurrent duplicates are serialised.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from simulators._common import iso_now, open_db
from simulators.cbs_models import AccountUpsert, format_money

__all__ = ["CbsError", "Ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY, currency TEXT NOT NULL, status TEXT NOT NULL,
    balance TEXT NOT NULL, held TEXT NOT NULL, pending TEXT NOT NULL, limits TEXT NOT NULL, holder TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parties (
    id_type TEXT NOT NULL, id_value TEXT NOT NULL, id_sub_value TEXT NOT NULL DEFAULT '',
    account_id TEXT NOT NULL, PRIMARY KEY (id_type, id_value, id_sub_value)
);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL, amount TEXT NOT NULL,
    currency TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_holds_open ON holds (status, created_at, id);
CREATE TABLE IF NOT EXISTS credits (
    id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL, amount TEXT NOT NULL,
    currency TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL
);
"""

Kind = Literal["hold", "credit"]
_NAMES = {  # wire names per kind: id field, key field, open status, 404 code, "already" codes
    "hold": ("holdId", "holdKey", "HELD", "hold_not_found", "hold_released", "hold_committed"),
    "credit": (
        "reservationId",
        "reservationKey",
        "RESERVED",
        "reservation_not_found",
        "reservation_released",
        "reservation_committed",
    ),
}


class CbsError(Exception):
    """A refusal in the contract's error dialect: HTTP status plus `{code, message}` (never a party id)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Ledger:
    def __init__(self, data_dir: Path) -> None:
        self._db = open_db(data_dir / "cbs-simulator.sqlite3")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is None

    # -- accounts and parties ----------------------------------------------------------------------------------
    def upsert_account(self, acc: AccountUpsert) -> tuple[dict[str, Any], bool]:
        """Create or replace an account (held and pending amounts of a replaced account are kept)."""
        with self._tx() as db:
            created = db.execute("SELECT 1 FROM accounts WHERE account_id = ?", (acc.account_id,)).fetchone() is None
            limits = acc.limits.model_dump(mode="json", by_alias=True, exclude_none=True)
            holder = acc.holder.model_dump(by_alias=True, exclude_none=True)
            db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, '0', '0', ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                "currency = excluded.currency, status = excluded.status, balance = excluded.balance, "
                "limits = excluded.limits, holder = excluded.holder",
                (acc.account_id, acc.currency, acc.status, str(acc.balance), json.dumps(limits), json.dumps(holder)),
            )
            db.execute("DELETE FROM parties WHERE account_id = ?", (acc.account_id,))
            for p in acc.parties:
                db.execute(
                    "INSERT OR REPLACE INTO parties VALUES (?, ?, ?, ?)",
                    (p.id_type, p.id_value, p.id_sub_value or "", acc.account_id),
                )
        return self.account(acc.account_id), created

    def set_status(self, account_id: str, status: str) -> dict[str, Any]:
        with self._tx() as db:
            if db.execute("UPDATE accounts SET status = ? WHERE account_id = ?", (status, account_id)).rowcount == 0:
                raise CbsError(404, "account_not_found", "account not found")
        return self.account(account_id)

    def _row(self, account_id: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
        if row is None:
            raise CbsError(404, "account_not_found", "account not found")
        return row

    def account(self, account_id: str) -> dict[str, Any]:
        row = self._row(account_id)
        balance, held = Decimal(row["balance"]), Decimal(row["held"])
        parties = []
        for p in self._db.execute("SELECT * FROM parties WHERE account_id = ? ORDER BY rowid", (account_id,)):
            party = {"idType": p["id_type"], "idValue": p["id_value"]}
            if p["id_sub_value"]:
                party["idSubValue"] = p["id_sub_value"]
            parties.append(party)
        return {
            "accountId": row["account_id"],
            "currency": row["currency"],
            "status": row["status"],
            "balance": format_money(balance),
            "held": format_money(held),
            "pendingCredits": format_money(Decimal(row["pending"])),
            "available": format_money(balance - held),
            "limits": {k: format_money(Decimal(v)) for k, v in json.loads(row["limits"]).items()},
            "holder": json.loads(row["holder"]),
            "parties": parties,
        }

    def party(self, id_type: str, id_value: str, id_sub_value: str | None) -> dict[str, Any]:
        """Resolve a party: MSISDN (with optional sub-id, matched exactly) or ACCOUNT_ID (= accountId, no sub-id)."""
        if id_type == "ACCOUNT_ID":
            found = id_value if id_sub_value is None else None
            if found and self._db.execute("SELECT 1 FROM accounts WHERE account_id = ?", (found,)).fetchone() is None:
                found = None
        else:
            row = self._db.execute(
                "SELECT account_id FROM parties WHERE id_type = ? AND id_value = ? AND id_sub_value = ?",
                (id_type, id_value, id_sub_value or ""),
            ).fetchone()
            found = row["account_id"] if row else None
        if found is None:
            raise CbsError(404, "party_not_found", "party not found")
        account = self.account(found)
        result: dict[str, Any] = {"idType": id_type, "idValue": id_value}
        if id_sub_value is not None:
            result["idSubValue"] = id_sub_value
        result.update(account["holder"])
        result.update(accountId=account["accountId"], currency=account["currency"], status=account["status"])
        return result

    # -- checks ------------------------------------------------------------------------------------------------
    @staticmethod
    def _check_open(row: sqlite3.Row) -> None:
        if row["status"] == "blocked":
            raise CbsError(409, "account_blocked", "account is blocked")
        if row["status"] == "closed":
            raise CbsError(409, "account_closed", "account is closed")

    def check_credit(self, account_id: str, amount: Decimal, currency: str) -> None:
        """Would the account accept this credit now? Raises the refusal; reserves nothing."""
        row = self._row(account_id)
        self._check_open(row)
        if currency != row["currency"]:
            raise CbsError(409, "unsupported_currency", "account does not hold this currency")
        limits = json.loads(row["limits"])
        if "maxCreditAmount" in limits and amount > Decimal(limits["maxCreditAmount"]):
            raise CbsError(409, "limit_exceeded", "amount exceeds the account's maximum credit amount")
        if "maxBalance" in limits and Decimal(row["balance"]) + Decimal(row["pending"]) + amount > Decimal(
            limits["maxBalance"]
        ):
            raise CbsError(409, "limit_exceeded", "credit would exceed the account's maximum balance")

    def _check_debit(self, account_id: str, amount: Decimal, currency: str) -> None:
        row = self._row(account_id)
        self._check_open(row)
        if currency != row["currency"]:
            raise CbsError(409, "currency_mismatch", "account does not hold this currency")
        if amount > Decimal(row["balance"]) - Decimal(row["held"]):
            raise CbsError(409, "insufficient_funds", "insufficient available funds")

    # -- holds (payer side) and credit reservations (payee side) -----------------------------------------------
    def open_entry(
        self, kind: Kind, key: str, account_id: str, amount: Decimal, currency: str
    ) -> tuple[dict[str, Any], bool]:
        """Place a hold / reserve a credit, idempotent by key. Returns (entry, created)."""
        table = "holds" if kind == "hold" else "credits"
        with self._tx() as db:
            row = db.execute(f"SELECT * FROM {table} WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if (row["account_id"], Decimal(row["amount"]), row["currency"]) != (account_id, amount, currency):
                    raise CbsError(409, "idempotency_conflict", "this key was already used with another body")
                return self._entry(kind, row), False
            if kind == "hold":
                self._check_debit(account_id, amount, currency)
                column = "held"
            else:
                self.check_credit(account_id, amount, currency)
                column = "pending"
            entry_id = f"{'hold' if kind == 'hold' else 'res'}-{uuid.uuid4()}"
            status = _NAMES[kind][2]
            db.execute(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry_id, key, account_id, str(amount), currency, status, iso_now()),
            )
            self._add(account_id, column, amount)
            row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(kind, row), True

    def finish_entry(self, kind: Kind, entry_id: str, action: Literal["commit", "release"]) -> dict[str, Any]:
        """Commit or release once; repeating the same action is a no-op, the opposite one a 409."""
        table = "holds" if kind == "hold" else "credits"
        _, _, open_status, not_found, released, committed = _NAMES[kind]
        target = "COMMITTED" if action == "commit" else "RELEASED"
        with self._tx() as db:
            row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                raise CbsError(404, not_found, f"{kind} not found")
            if row["status"] == open_status:
                amount, account_id = Decimal(row["amount"]), row["account_id"]
                if kind == "hold":
                    self._add(account_id, "held", -amount)
                    if action == "commit":
                        self._add(account_id, "balance", -amount)
                else:
                    self._add(account_id, "pending", -amount)
                    if action == "commit":
                        self._add(account_id, "balance", amount)
                db.execute(f"UPDATE {table} SET status = ? WHERE id = ?", (target, entry_id))
            elif row["status"] != target:
                code = released if row["status"] == "RELEASED" else committed
                raise CbsError(409, code, f"{kind} is already {row['status'].lower()}")
            row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(kind, row)

    def get_entry(self, kind: Kind, entry_id: str) -> dict[str, Any]:
        table = "holds" if kind == "hold" else "credits"
        row = self._db.execute(f"SELECT * FROM {table} WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise CbsError(404, _NAMES[kind][3], f"{kind} not found")
        return self._entry(kind, row)

    def open_holds(
        self, *, created_before: str | None, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """Holds in status HELD, oldest first (`created_at`, then id), created before `created_before` (our
        timestamp format, so text order is time order), after the `(created_at, id)` of a previous page's last
        one. Returns the page and, when more may follow, the `(created_at, id)` to continue after."""
        query = "SELECT * FROM holds WHERE status = 'HELD'"
        params: list[Any] = []
        if created_before is not None:
            query += " AND created_at < ?"
            params.append(created_before)
        if after is not None:
            query += " AND (created_at > ? OR (created_at = ? AND id > ?))"
            params += [after[0], after[0], after[1]]
        rows = self._db.execute(query + " ORDER BY created_at, id LIMIT ?", (*params, limit + 1)).fetchall()
        page = rows[:limit]
        listed = [{**self._entry("hold", row), "createdAt": row["created_at"]} for row in page]
        more = len(rows) > limit
        return listed, (page[-1]["created_at"], page[-1]["id"]) if more else None

    def _add(self, account_id: str, column: str, delta: Decimal) -> None:
        row = self._row(account_id)
        self._db.execute(
            f"UPDATE accounts SET {column} = ? WHERE account_id = ?", (str(Decimal(row[column]) + delta), account_id)
        )

    @staticmethod
    def _entry(kind: Kind, row: sqlite3.Row) -> dict[str, Any]:
        id_name, key_name = _NAMES[kind][0], _NAMES[kind][1]
        return {
            id_name: row["id"],
            key_name: row["key"],
            "accountId": row["account_id"],
            "amount": format_money(Decimal(row["amount"])),
            "currency": row["currency"],
            "status": row["status"],
        }
