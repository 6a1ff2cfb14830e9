"""The webhook receiver's record of every request it got (SQLite in its data dir) and its admin models.

Every POST is recorded when it arrives (so a test sees an attempt that is still held open), with all its headers,
its body byte for byte (a signature can be checked on it) and, once answered, the status; a request whose caller
went away before the answer is marked `client_gone`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from pydantic.alias_generators import to_camel

from simulators._common import iso_now, open_db

__all__ = ["ApiKeysAuth", "AuthSpec", "BasicAuth", "EventLog", "FaultSpec", "NoAuth", "OAuth2Auth", "Outcome"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, path TEXT NOT NULL,
    event_id TEXT, transfer_id TEXT, headers TEXT NOT NULL, body TEXT NOT NULL,
    auth_ok INTEGER NOT NULL, status INTEGER, outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_event ON requests (event_id);
CREATE INDEX IF NOT EXISTS requests_transfer ON requests (transfer_id);
"""
Outcome = Literal["pending", "answered", "client_gone"]


class _Admin(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FaultSpec(_Admin):
    """`PUT /_sim/faults`: how to answer the next `times` authenticated requests (null: until cleared)."""

    status: int = Field(default=200, ge=200, le=599)
    delay_s: float = Field(default=0.0, ge=0, le=3600)
    hold: bool = False  # hold each request open until `POST /_sim/release`, the caller goes away or we stop
    location: str = "/redirected"  # sent with a 3xx status: a caller that follows it shows up at that path
    times: int | None = Field(default=None, ge=1)


class NoAuth(_Admin):
    type: Literal["none"]


class ApiKeysAuth(_Admin):
    type: Literal["api_keys"]
    headers: dict[str, str] = Field(min_length=1, max_length=5)


class BasicAuth(_Admin):
    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: str


class OAuth2Auth(_Admin):
    """Bearer tokens, checked by RFC 7662 introspection at `{tokenServerUrl}/introspect` (our token server)."""

    type: Literal["oauth2"]
    token_server_url: HttpUrl
    scope: str | None = None  # when set, the token's scope must include it


AuthSpec = Annotated[NoAuth | ApiKeysAuth | BasicAuth | OAuth2Auth, Field(discriminator="type")]


def _ids(body: bytes) -> tuple[str | None, str | None]:
    """The event id and transfer id of a webhook body, when it is one."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(event, dict):
        return None, None
    data = event.get("data")
    transfer = data.get("transferId") if isinstance(data, dict) else None
    event_id = event.get("id")
    return (
        event_id if isinstance(event_id, str) else None,
        transfer if isinstance(transfer, str) else None,
    )


class EventLog:
    """Requests in arrival order; `seq` numbers them (never reused, also after `clear`)."""

    def __init__(self, data_dir: Path) -> None:
        self._db = open_db(Path(data_dir) / "webhook-receiver.db")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def arrived(self, path: str, headers: dict[str, str], body: bytes, auth_ok: bool) -> int:
        event_id, transfer_id = _ids(body)
        cursor = self._db.execute(
            "INSERT INTO requests (received_at, path, event_id, transfer_id, headers, body, auth_ok, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
            (iso_now(), path, event_id, transfer_id, json.dumps(headers), body.decode("utf-8", "replace"), auth_ok),
        )
        return int(cursor.lastrowid or 0)

    def finished(self, seq: int, status: int, outcome: Outcome) -> None:
        self._db.execute("UPDATE requests SET status = ?, outcome = ? WHERE seq = ?", (status, outcome, seq))

    def clear(self) -> None:
        self._db.execute("DELETE FROM requests")

    def query(
        self, event_id: str | None, transfer_id: str | None, after: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many requests match, the first `limit` of them after `seq` `after`)."""
        where, args = ["1 = 1"], []
        if event_id is not None:
            where.append("event_id = ?")
            args.append(event_id)
        if transfer_id is not None:
            where.append("transfer_id = ?")
            args.append(transfer_id)
        condition = " AND ".join(where)
        total = self._db.execute(f"SELECT count(*) FROM requests WHERE {condition}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM requests WHERE {condition} AND seq > ? ORDER BY seq LIMIT ?", [*args, after, limit]
        ).fetchall()
        return int(total), [self._view(row) for row in rows]

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        try:
            body = json.loads(row["body"])
        except ValueError:
            body = None
        return {
            "seq": row["seq"],
            "receivedAt": row["received_at"],
            "path": row["path"],
            "eventId": row["event_id"],
            "transferId": row["transfer_id"],
            "headers": json.loads(row["headers"]),
            "body": body,
            "rawBody": row["body"],
            "authOk": bool(row["auth_ok"]),
            "status": row["status"],
            "outcome": row["outcome"],
        }
