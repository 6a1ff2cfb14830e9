"""The `mojaflow` command: operators' tools (installed as a console script by `make install`).

mojaflow keys --help
"""

from __future__ import annotations

import typer

__all__ = ["app", "keys_app", "main"]

app = typer.Typer(help="mojaflow: a durable Mojaloop core connector. Operators' tools.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the client API, and the keys mojaflow encrypts with.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
