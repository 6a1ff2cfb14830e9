"""The `mojaflow` command: operators' tools (installed as a console script by `make install`).

mojaflow keys --help
"""

from __future__ import annotations

import typer

from mojaflow import api_key_commands, cbs_check, key_rotation, resolve_commands, sweeper_commands, transfer_commands

__all__ = ["app", "keys_app", "main", "transfers_app"]

app = typer.Typer(help="mojaflow: a durable Mojaloop core connector. Operators' tools.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the client API, and the keys mojaflow encrypts with.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
transfers_app = typer.Typer(help="Find stuck transfers, read one's story, export a day.", no_args_is_help=True)
app.add_typer(transfers_app, name="transfers")

# The client API's keys (README "Authentication"): mojaflow/api_key_commands.py
keys_app.command("create")(api_key_commands.create_key)
keys_app.command("list")(api_key_commands.list_keys)
keys_app.command("revoke")(api_key_commands.revoke_key)

# The rings mojaflow encrypts with (README "Keys and rotation"): mojaflow/key_rotation.py
keys_app.command("rotate-payload")(key_rotation.rotate_payload)
keys_app.command("rotate-secrets")(key_rotation.rotate_secrets)

# Transfers as our database has them (README "Operations"): mojaflow/transfer_commands.py
transfers_app.command("list")(transfer_commands.list_transfers)
transfers_app.command("show")(transfer_commands.show_transfer)
transfers_app.command("export")(transfer_commands.export_day)
transfers_app.command("resolve")(resolve_commands.resolve)  # settle a stuck one: mojaflow/resolve_commands.py
# What the stuck-transfer sweeper found (README "Operations"): mojaflow/sweeper_commands.py
transfers_app.command("stuck")(sweeper_commands.stuck)

# Does a bank's CBS keep cbs-contract.openapi.yaml? (README "Operations"): mojaflow/cbs_check.py
app.command("cbs-check")(cbs_check.cbs_check)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
