"""`mojaflow keys create|list|revoke`: the client API's keys, for operators (registered in `mojaflow.cli`).

    KEY=$(mojaflow keys create --client-key bank1 --name "core banking")   # the key on stdout, once
    mojaflow keys list                                                      # never the key
    mojaflow keys revoke 3f9a0c1b2d4e                                       # by its id

They work on the database and secrets key ring of the settings (`MOJAFLOW_DATABASE_URL`, `MOJAFLOW_SECRETS_KEYS`,
else the data dir's), which must be the API's. Messages go to stderr, so stdout holds only what a script reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer

from mojaflow.api_keys import ApiKey, ApiKeyStore, NewApiKey
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.settings import Settings

__all__ = ["create_key", "list_keys", "revoke_key"]

T = TypeVar("T")


def _run(action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = Settings()
        database = Database(settings.resolved_database_url)
        try:
            await database.create_schema()
            return await action(ApiKeyStore(database, load_secrets_ring(settings)))
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except ValueError as error:  # bad input or a malformed key setting: say which, no traceback
        typer.echo(f"mojaflow keys: {error}", err=True)
        raise typer.Exit(2) from None


def create_key(
    client_key: Annotated[str, typer.Option("--client-key", help="the client_key this key acts as")],
    name: Annotated[str | None, typer.Option(help="a label for people, e.g. the system that uses it")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="may read every client's transfers")] = False,
) -> None:
    """Make an API key and print it, once: only its HMAC is kept."""
    made: NewApiKey = _run(lambda store: store.create(client_key=client_key, name=name, operator=operator))
    typer.echo(made.key)
    role = " (operator)" if operator else ""
    typer.echo(
        f"API key {made.stored.key_id} for client_key {client_key}{role}: store it now, it is not shown again. "
        "Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
        err=True,
    )


def list_keys() -> None:
    """Every key's id, client_key, name, role and dates; never the key."""
    keys: list[ApiKey] = _run(lambda store: store.list())
    rows = [("KEY ID", "CLIENT_KEY", "NAME", "OPERATOR", "CREATED", "REVOKED")]
    rows += [
        (key.key_id, key.client_key, key.name or "-", "yes" if key.operator else "no", _time(key.created_at),
         _time(key.revoked_at) if key.revoked_at else "-")
        for key in keys
    ]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def revoke_key(key_id: Annotated[str, typer.Argument(help="the key's id, as `mojaflow keys list` shows it")]) -> None:
    """Revoke a key: API processes refuse it within MOJAFLOW_API_KEY_CACHE_S seconds."""
    key_id = key_id.removeprefix("mf_").split("_", 1)[0]  # `mf_<id>` (the public part) names it too
    revoked: ApiKey | None = _run(lambda store: store.revoke(key_id))
    if revoked is None:
        typer.echo(f"mojaflow keys: no API key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"API key {key_id} revoked at {_time(revoked.revoked_at)}")


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"
