"""`mojaflow keys rotate-payload|rotate-secrets`: a new first key for a ring (registered in `mojaflow.cli`).

    mojaflow keys rotate-payload                  # payload.key in the data dir: a new first key, old ones kept
    mojaflow keys rotate-secrets                  # the same for secrets.key, then personal data re-encrypted
    mojaflow keys rotate-secrets --reencrypt-only # re-encrypt under the ring's first key only

A ring kept in the data dir is rewritten (atomically); running processes decode the new key at once, and encrypt
with it once restarted. A ring set in the environment is never written: the command prints the new key and what to
set. Status goes to stderr; stdout holds only what an operator must copy (the settings to set).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from sqlalchemy import Row, Select, Update, select, update

from mojaflow.database import Database, inbound_quotes, transfers
from mojaflow.keys import KEY_BYTES, KeyRing, UnknownKeyError, derived_key_id, load_ring, prepend_new_key, ring_spec
from mojaflow.personal_data import SEALED, seal_quote, seal_transfer, unseal_quote, unseal_transfer
from mojaflow.settings import Settings
from mojaflow.webhook_subscription_secrets import reseal_subscription_secrets

__all__ = ["ResealReport", "environment_instructions", "reseal_personal_data", "rotate_payload", "rotate_secrets"]

_BATCH = 200


@dataclass
class ResealReport:
    transfers: int = 0
    quotes: int = 0
    subscriptions: int = 0  # webhook subscriptions' secrets
    unreadable: dict[str, int] = field(default_factory=dict)  # key id → rows under a key the ring lost


def rotate_payload() -> None:
    """A new first key for the payload codec's ring; the old keys stay, to decode the histories they wrote."""
    settings = _settings()
    ring = _rotate(settings, "payload")
    if ring is not None:
        _say(f"payload key ring {ring.path}: key {ring.primary_id} encrypts from now on; {_kept(ring)}")
        _say("restart the worker and the API so they encrypt with it (running ones already decode it)")


def rotate_secrets(
    reencrypt_only: Annotated[
        bool, typer.Option("--reencrypt-only", help="Only re-encrypt stored data under the ring's first key.")
    ] = False,
) -> None:
    """A new first key for the secrets ring, then the personal data at rest re-encrypted under it."""
    settings = _settings()
    if reencrypt_only:
        ring = _load(settings, "secrets")
    else:
        rotated = _rotate(settings, "secrets")
        if rotated is None:
            return
        ring = rotated
        _say(f"secrets key ring {ring.path}: key {ring.primary_id} encrypts from now on; {_kept(ring)}")
    report = asyncio.run(_reseal(settings, ring))
    _say(
        f"re-encrypted under {ring.primary_id}: {report.transfers} transfers, {report.quotes} inbound quotes,"
        f" {report.subscriptions} webhook subscriptions"
    )
    if report.unreadable:
        lost = ", ".join(f"{count} under {key_id!r}" for key_id, count in sorted(report.unreadable.items()))
        _say(f"left as they are (their key is not in {ring.origin}): {lost}")
        raise typer.Exit(1)
    if not reencrypt_only:
        _say(
            "restart the worker and the API, then run `mojaflow keys rotate-secrets --reencrypt-only` for what they"
            " wrote in between; API keys stay verified under the key they were made with, so keep it in the ring"
        )


async def reseal_personal_data(database: Database) -> ResealReport:
    """Re-encrypt every sealed field not under the first key of the database's ring. A row that changed meanwhile
    is left to its writer (it sealed it anew); a row under a key the ring lost is counted, not touched."""
    sealer = database.sealer
    if sealer is None:
        raise ValueError("re-encrypting needs the secrets ring")
    report = ResealReport()
    primary = sealer.ring.primary_id
    page = select(transfers.c.transfer_id, transfers.c.resource, transfers.c.revision).where(
        transfers.c.resource[(SEALED, "keyId")].as_string() != primary
    )
    after = ""
    while rows := await _rows(database, page.where(transfers.c.transfer_id > after).order_by(transfers.c.transfer_id)):
        for row in rows:
            try:
                resource = seal_transfer(unseal_transfer(row.resource, sealer), sealer)
            except UnknownKeyError as error:
                report.unreadable[error.key_id] = report.unreadable.get(error.key_id, 0) + 1
                continue
            same_revision = (transfers.c.transfer_id == row.transfer_id) & (transfers.c.revision == row.revision)
            report.transfers += await _update(
                database, update(transfers).where(same_revision).values(resource=resource)
            )
        after = rows[-1].transfer_id
    quotes = inbound_quotes.c
    quote_page = select(quotes.quote_id, quotes.quote).where(quotes.quote[(SEALED, "keyId")].as_string() != primary)
    after = ""
    while rows := await _rows(database, quote_page.where(quotes.quote_id > after).order_by(quotes.quote_id)):
        for row in rows:
            try:
                quote = seal_quote(row.quote_id, unseal_quote(row.quote_id, row.quote, sealer), sealer)
            except UnknownKeyError as error:
                report.unreadable[error.key_id] = report.unreadable.get(error.key_id, 0) + 1
                continue
            unchanged = (quotes.quote_id == row.quote_id) & (
                quotes.quote[(SEALED, "data")].as_string() == row.quote[SEALED]["data"]
            )  # replaced meanwhile (the SDK asked again): its writer sealed it
            report.quotes += await _update(database, update(inbound_quotes).where(unchanged).values(quote=quote))
        after = rows[-1].quote_id
    subscriptions = await reseal_subscription_secrets(database)
    report.subscriptions = subscriptions.subscriptions
    for key_id, count in subscriptions.unreadable.items():
        report.unreadable[key_id] = report.unreadable.get(key_id, 0) + count
    return report


def environment_instructions(name: str, setting: str, alias: str | None, current: KeyRing, key: bytes) -> list[str]:
    """What to set, in two steps, when the ring comes from the environment (we cannot write there)."""
    key_id = derived_key_id(key)
    entry = f"{key_id}:{base64.b64encode(key).decode()}"
    if alias is not None and current.alias == alias:
        before = f"${alias}"
        note = f" and unset {alias}"
    else:
        before, note = f"${setting}", ""
    lines = [
        f"{setting} comes from the environment: nothing was written. A new {name} key, id {key_id}. Set it on every",
        "process that uses this ring (worker, API, this command), in two steps:",
        "1. last, so every process can decode it before any encrypts with it; restart them all:",
        f'   {setting}="{before},{entry}"{note}',
        "2. then first, so it encrypts; restart them all again:",
        f'   {setting}="{entry},{before}"',
    ]
    lines.append(f"(${alias if note else setting} stands for the value it has now, before step 1.)")
    if name == "secrets":
        lines.append(
            "3. then re-encrypt what is stored, with that ring set: mojaflow keys rotate-secrets --reencrypt-only"
        )
    return lines


# -- helpers -----------------------------------------------------------------------------------------


def _rotate(settings: Settings, name: str) -> KeyRing | None:
    """The new ring written to the data dir, or None after printing what to set in the environment."""
    spec = ring_spec(settings, name)
    if spec.from_settings:
        current = _load(settings, name)
        for line in environment_instructions(name, spec.setting, spec.alias, current, os.urandom(KEY_BYTES)):
            print(line)
        return None
    _load(settings, name)  # a malformed file is reported, not rewritten
    return prepend_new_key(spec.path, spec.setting)


def _load(settings: Settings, name: str) -> KeyRing:
    try:
        return load_ring(ring_spec(settings, name))
    except ValueError as error:
        _say(f"mojaflow: {error}")
        raise typer.Exit(2) from None


async def _reseal(settings: Settings, ring: KeyRing) -> ResealReport:
    database = Database(settings.resolved_database_url, secrets=ring)
    try:
        await database.create_schema()
        return await reseal_personal_data(database)
    finally:
        await database.close()


async def _rows(database: Database, query: Select[Any]) -> Sequence[Row[Any]]:
    async with database.engine.connect() as connection:
        return (await connection.execute(query.limit(_BATCH))).all()


async def _update(database: Database, statement: Update) -> int:
    async with database.engine.begin() as connection:
        return (await connection.execute(statement)).rowcount


def _kept(ring: KeyRing) -> str:
    return f"kept to decrypt: {', '.join(ring.ids[1:])}" if len(ring.ids) > 1 else "no older key"


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as error:  # pydantic's message names the setting; ring values are SecretStr, never echoed
        _say(f"mojaflow: {error}")
        raise typer.Exit(2) from None


def _say(message: str) -> None:
    print(message, file=sys.stderr)
