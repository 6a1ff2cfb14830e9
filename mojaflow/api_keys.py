"""API keys of the client API: made, listed, revoked and verified here; the key itself is never stored.

A key reads `mf_<key_id>_<secret>`: `key_id` (12 hex digits) is public (it names the key in lists, logs and the
audit log), `secret` is 32 random bytes, urlsafe base64. The database keeps an HMAC-SHA256 of the whole key under
a key derived from the secrets key ring (`MOJAFLOW_SECRETS_KEYS`): a fast keyed hash is right for high-entropy
keys (a password hash would cost tens of ms per request), and a stolen database alone verifies nothing. The ring
key used is recorded with each key, so a rotation of the ring leaves existing keys working while the old ring key
stays in it. Comparisons are constant-time.

    store = ApiKeyStore(database, load_secrets_ring(settings))
    made = await store.create(client_key="bank1", name="core banking")   # made.key is shown once
    caller = await store.verify(made.key)                                 # the stored ApiKey, or None
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import select, update

from mojaflow.audit import record_action
from mojaflow.database import Database, api_keys
from mojaflow.keys import KeyRing, UnknownKeyError

__all__ = ["DEV_CLIENT_KEY", "ApiKey", "ApiKeyStore", "NewApiKey", "ensure_dev_key", "looks_like_api_key"]

_KEY = re.compile(r"^mf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_CLIENT_KEY = re.compile(r"^[a-zA-Z0-9]{1,10}$")  # the Money Movement header's rule
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
DEV_CLIENT_KEY = "bank1"  # the README's examples send `client_key: bank1`
# Domain separation: the ring's keys also encrypt secrets at rest; API keys are hashed under a key derived from them.
_PURPOSE = b"mojaflow api key hash v1"


@dataclass(frozen=True)
class ApiKey:
    """A stored key as anyone may see it: never the key, never its hash."""

    key_id: str
    client_key: str
    name: str | None
    operator: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        """Who acted, in the audit log and a transfer's `decisions`."""
        return f"api_key:{self.key_id}"


@dataclass(frozen=True, repr=False)
class NewApiKey:
    """A key just made: `key` is shown to its owner once, then only its HMAC remains."""

    key: str
    stored: ApiKey

    def __repr__(self) -> str:
        return f"NewApiKey(key_id={self.stored.key_id!r})"


def looks_like_api_key(credential: str) -> bool:
    return _KEY.match(credential) is not None


class ApiKeyStore:
    """The `api_keys` table. Raises ValueError with a message fit for the operator on bad input."""

    def __init__(self, database: Database, ring: KeyRing) -> None:
        self._db = database
        self._ring = ring
        self._derived: dict[str, bytes] = {}

    async def create(
        self, *, client_key: str, name: str | None = None, operator: bool = False, actor: str = "cli"
    ) -> NewApiKey:
        if not _CLIENT_KEY.match(client_key):
            raise ValueError("client_key must match ^[a-zA-Z0-9]{1,10}$ (as the client_key header)")
        if name is not None and not _NAME.match(name):
            raise ValueError("name must be 1 to 100 characters, without control characters")
        key_id = secrets.token_hex(6)
        key = f"mf_{key_id}_{secrets.token_urlsafe(32)}"
        stored = ApiKey(key_id, client_key, name, operator, datetime.now(UTC), None)
        async with self._db.engine.begin() as connection:
            await connection.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    client_key=client_key,
                    name=name,
                    operator=operator,
                    key_hash=self._hash(key, self._ring.primary_id),
                    hash_key_id=self._ring.primary_id,
                    created_at=stored.created_at,
                )
            )
        await record_action(
            self._db, actor=actor, action="api_key.create", client_key=client_key,
            detail=f"key {key_id}" + (" (operator)" if operator else ""),
        )  # fmt: skip
        return NewApiKey(key, stored)

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        query = select(*_PUBLIC_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.key_id)
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [ApiKey(*row) for row in rows]

    async def revoke(self, key_id: str, *, actor: str = "cli") -> ApiKey | None:
        """Revoke a key by its id (idempotent: a revoked key keeps its first revocation time); None if unknown.
        API processes stop accepting it within `MOJAFLOW_API_KEY_CACHE_S`."""
        now = datetime.now(UTC)
        async with self._db.engine.begin() as connection:
            revoked = await connection.execute(
                update(api_keys)
                .where((api_keys.c.key_id == key_id) & api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = (await connection.execute(select(*_PUBLIC_COLUMNS).where(api_keys.c.key_id == key_id))).first()
        if row is None:
            return None
        if revoked.rowcount:
            await record_action(
                self._db, actor=actor, action="api_key.revoke", client_key=row.client_key, detail=f"key {key_id}"
            )
        return ApiKey(*row)

    async def verify(self, presented: str) -> ApiKey | None:
        """The stored key if `presented` is a key we made and did not revoke; else None."""
        match = _KEY.match(presented)
        if match is None:
            return None
        query = select(*_PUBLIC_COLUMNS, api_keys.c.key_hash, api_keys.c.hash_key_id).where(
            api_keys.c.key_id == match.group(1)
        )
        async with self._db.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        try:
            expected = self._hash(presented, row.hash_key_id)
        except UnknownKeyError:  # the ring lost the key this one was hashed under: it can no longer be verified
            return None
        if not hmac.compare_digest(expected, row.key_hash) or row.revoked_at is not None:
            return None
        return ApiKey(*row[: len(_PUBLIC_COLUMNS)])

    def _hash(self, key: str, ring_key_id: str) -> str:
        derived = self._derived.get(ring_key_id)
        if derived is None:
            ring_key = self._ring.require(ring_key_id, "an API key's hash")
            derived = self._derived[ring_key_id] = hmac.new(ring_key, _PURPOSE, hashlib.sha256).digest()
        return hmac.new(derived, key.encode(), hashlib.sha256).hexdigest()


async def ensure_dev_key(store: ApiKeyStore, path: Path) -> tuple[Literal["made", "kept", "refused"], str | None]:
    """`make run`'s development key: made on first start (client_key `bank1`, operator, so the README's examples
    also list inbound transfers) and written to `path` (0600); the key is returned only when made. "refused": the
    file holds a key this database does not accept (revoked, or another database); it is left alone."""
    if path.exists():
        return ("kept" if await store.verify(path.read_text().strip()) else "refused"), None
    made = await store.create(client_key=DEV_CLIENT_KEY, name="make run (development)", operator=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(made.key + "\n")
    return "made", made.key


_PUBLIC_COLUMNS = (
    api_keys.c.key_id,
    api_keys.c.client_key,
    api_keys.c.name,
    api_keys.c.operator,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)
