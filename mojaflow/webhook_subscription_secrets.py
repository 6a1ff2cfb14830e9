"""A webhook subscription's secrets at rest: sealed with the secrets ring, bound to the subscription and purpose.

* `auth_sealed`: the auth scheme's secrets (API-key header values, Basic password, OAuth2 client secret);
* `signing_sealed`: the Standard Webhooks signing secrets, newest first, each with its expiry (`None`: current).

Each is `Sealer.seal` output (AES-256-GCM under the ring's first key, its key id beside it) whose associated data is
`webhook_subscription:{id}:{purpose}`: a blob copied to another row or column does not open.
`reseal_subscription_secrets` re-encrypts them under the ring's first key after `mojaflow keys rotate-secrets`.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from mojaflow.database import Database
from mojaflow.keys import UnknownKeyError
from mojaflow.personal_data import Sealer
from mojaflow.webhook_subscription_models import ApiKeysAuth, BasicAuth, SubscriptionAuth
from mojaflow.webhook_tables import webhook_subscriptions

__all__ = [
    "SIGNING_OVERLAP",
    "SIGNING_SECRET_PREFIX",
    "ResealCount",
    "new_signing_secret",
    "open_auth",
    "open_signing",
    "reseal_subscription_secrets",
    "seal_auth",
    "seal_signing",
    "sealer_of",
    "signing_expiry",
]

SIGNING_OVERLAP = timedelta(hours=24)  # a rotated-out signing secret keeps signing this long
SIGNING_SECRET_PREFIX = "whsec_"
_SIGNING_SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 random bytes
_columns = webhook_subscriptions.c


def new_signing_secret() -> str:
    """`whsec_` + base64 of 32 random bytes, as the Standard Webhooks libraries take it."""
    return SIGNING_SECRET_PREFIX + base64.b64encode(os.urandom(_SIGNING_SECRET_BYTES)).decode()


def sealer_of(database: Database) -> Sealer:
    if database.sealer is None:
        raise RuntimeError("webhook subscriptions keep secrets: the database needs the secrets ring")
    return database.sealer


def _context(subscription_id: str, purpose: str) -> str:
    return f"webhook_subscription:{subscription_id}:{purpose}"


def seal_auth(sealer: Sealer, subscription_id: str, auth: SubscriptionAuth) -> dict[str, Any]:
    """The columns `auth_type`, `auth_public` (shown back; wire names) and `auth_sealed` (the secrets)."""
    public: dict[str, Any]
    secret: dict[str, Any]
    if isinstance(auth, ApiKeysAuth):
        public = {"headers": dict.fromkeys(auth.headers)}
        secret = {"headers": {name: value.get_secret_value() for name, value in auth.headers.items()}}
    elif isinstance(auth, BasicAuth):
        public, secret = {"username": auth.username}, {"password": auth.password.get_secret_value()}
    else:
        public = {"clientId": auth.client_id, "tokenUrl": auth.token_url, "scope": auth.scope}
        secret = {"clientSecret": auth.client_secret.get_secret_value()}
    sealed = sealer.seal(secret, context=_context(subscription_id, "auth"))
    return {"auth_type": auth.type, "auth_public": public, "auth_sealed": sealed}


def open_auth(sealer: Sealer, subscription_id: str, sealed: dict[str, Any]) -> dict[str, Any]:
    """The auth scheme's secret fields, by wire name (merge them with `auth_public` to rebuild the scheme)."""
    return sealer.open(sealed, context=_context(subscription_id, "auth"))


def seal_signing(sealer: Sealer, subscription_id: str, entries: list[dict[str, Any]]) -> dict[str, str]:
    """`entries`: [{"secret": "whsec_…", "expiresAt": ISO 8601 or None}], newest first."""
    return sealer.seal({"secrets": entries}, context=_context(subscription_id, "signing"))


def open_signing(sealer: Sealer, subscription_id: str, sealed: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = sealer.open(sealed, context=_context(subscription_id, "signing"))["secrets"]
    return entries


def signing_expiry(entry: dict[str, Any]) -> datetime | None:
    expires = entry.get("expiresAt")
    return datetime.fromisoformat(expires) if expires else None


@dataclass
class ResealCount:
    subscriptions: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)  # key id → subscriptions under a key the ring lost


async def reseal_subscription_secrets(database: Database) -> ResealCount:
    """Re-encrypt every subscription's secrets not under the first key of the database's ring (deleted ones too:
    their deliveries may still read them). A row whose secrets changed meanwhile is left to its writer (it sealed
    them anew); one under a key the ring lost is counted, not touched."""
    sealer = sealer_of(database)
    primary = sealer.ring.primary_id
    count = ResealCount()
    stale = (_columns.auth_sealed["keyId"].as_string() != primary) | (
        _columns.signing_sealed["keyId"].as_string() != primary
    )
    query = select(_columns.subscription_id, _columns.auth_sealed, _columns.signing_sealed).where(stale)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(query.order_by(_columns.subscription_id))).all()
    for row in rows:
        sid = row.subscription_id
        try:
            auth = sealer.seal(open_auth(sealer, sid, row.auth_sealed), context=_context(sid, "auth"))
            signing = seal_signing(sealer, sid, open_signing(sealer, sid, row.signing_sealed))
        except UnknownKeyError as error:
            count.unreadable[error.key_id] = count.unreadable.get(error.key_id, 0) + 1
            continue
        unchanged = (
            (_columns.subscription_id == sid)
            & (_columns.auth_sealed["data"].as_string() == row.auth_sealed["data"])
            & (_columns.signing_sealed["data"].as_string() == row.signing_sealed["data"])
        )
        async with database.engine.begin() as connection:
            result = await connection.execute(
                update(webhook_subscriptions).where(unchanged).values(auth_sealed=auth, signing_sealed=signing)
            )
        count.subscriptions += result.rowcount
    return count
