"""`mojaflow transfers resolve`: an operator settles a stuck transfer after checking with the hub (registered in
`mojaflow.cli`; the rules in mojaflow/resolution.py, the work in mojaflow/transfer_resolution.py).

    export MOJAFLOW_OPERATOR_API_KEY=mf_…      # an operator key (`mojaflow keys create --operator`): who resolves
    mojaflow transfers resolve 5b1c… --committed --reason "hub: COMMITTED, ticket OPS-42"
    mojaflow transfers resolve 5b1c… --aborted --reason "hub: ABORTED (5105)"

It uses the database and secrets ring of the settings (to check the key), and Temporal (MOJAFLOW_TEMPORAL_*): the
API's and the workers' settings. Exit 0: resolved; 1: refused (unknown transfer, not resolvable, already resolved,
the CBS refused); 2: bad input or settings. Results on stdout, messages on stderr; never a name or a party id.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from mojaflow.api_keys import ApiKeyStore
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring
from mojaflow.resolution import REASON_MAX, ResolveInput
from mojaflow.settings import Settings
from mojaflow.temporal import TemporalConnectError, connect
from mojaflow.transfer_resolution import ResolutionRefused, Resolved, resolve_transfer

__all__ = ["resolve"]

_PREFIX = "mojaflow transfers resolve"


class _Usage(Exception):
    """Bad input or settings: exit 2."""


def resolve(
    transfer_id: Annotated[str, typer.Argument(help="our transferId or the SDK's")],
    reason: Annotated[
        str, typer.Option("--reason", help=f"why: what the hub said, a ticket (≤ {REASON_MAX} characters, audited)")
    ],
    committed: Annotated[bool, typer.Option("--committed", help="the hub says COMMITTED: commit the hold")] = False,
    aborted: Annotated[bool, typer.Option("--aborted", help="the hub says ABORTED: release the hold")] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="MOJAFLOW_OPERATOR_API_KEY",
            show_envvar=True,
            show_default=False,
            help="an operator API key: its id is the audit trail's actor (prefer the variable)",
        ),
    ] = None,  # fmt: skip
    wait_s: Annotated[float, typer.Option("--wait", min=0, max=300, help="seconds to wait for the settlement")] = 30,
) -> None:
    """Settle a RECONCILING or SETTLING transfer, or a settlement_failed / release_failed one, as the hub says."""
    if committed == aborted:
        raise typer.BadParameter("say exactly one of --committed or --aborted", param_hint="'--committed/--aborted'")
    if not api_key:
        raise typer.BadParameter(
            "an operator API key is required (MOJAFLOW_OPERATOR_API_KEY)", param_hint="'--api-key'"
        )
    outcome = "COMMITTED" if committed else "ABORTED"
    try:
        resolved = asyncio.run(_resolve(transfer_id, outcome, reason, api_key, wait_s))
    except _Usage as error:
        typer.echo(f"{_PREFIX}: {error}", err=True)
        raise typer.Exit(2) from None
    except ResolutionRefused as error:
        typer.echo(f"{_PREFIX}: {transfer_id}: {error}", err=True)
        raise typer.Exit(1) from None
    view = resolved.view
    typer.echo(f"{view.transfer_id}  {view.current_state.value}  hold {view.hold_id or '-'}")
    how = "its workflow took the resolution" if resolved.path == "update" else "resolved by workflow"
    typer.echo(f"{how} ({resolved.workflow_id}); `mojaflow transfers show {view.transfer_id}` tells the rest", err=True)


async def _resolve(transfer_id: str, outcome: str, reason: str, api_key: str, wait_s: float) -> Resolved:
    try:
        settings = Settings()
        ring = load_secrets_ring(settings)
    except ValueError as error:  # a malformed setting: which one, no traceback
        raise _Usage(str(error)) from None
    database = Database(settings.resolved_database_url)  # no secrets ring: personal data stays sealed
    try:
        try:
            key = await ApiKeyStore(database, ring).verify(api_key.strip())
        except SQLAlchemyError as error:
            raise _Usage(f"cannot read the database of MOJAFLOW_DATABASE_URL: {type(error).__name__}") from None
        if key is None:
            raise _Usage("the API key is not valid here (unknown, revoked, or another database's)")
        if not key.operator:
            raise _Usage(f"API key {key.key_id} is not an operator key (`mojaflow keys create --operator`)")
        try:
            request = ResolveInput(outcome=outcome, reason=reason, actor=key.actor)  # type: ignore[arg-type]
        except ValidationError as error:
            raise _Usage(f"--reason {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        try:
            client = await connect(settings)
        except TemporalConnectError as error:
            raise _Usage(str(error)) from None
        return await resolve_transfer(database, client, settings.task_queue, transfer_id, request, wait_s=wait_s)
    finally:
        await database.close()
