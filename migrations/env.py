"""Alembic environment for mojaflow's app database.

Our processes migrate at start-up through `mojaflow.database.Database.create_schema()`, which hands Alembic an
open connection (`config.attributes["connection"]`). From the command line:
`.venv/bin/alembic -c migrations/alembic.ini -x url=sqlite:///.mojaflow/mojaflow.db upgrade head`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mojaflow.database import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    context.configure(url=context.get_x_argument(as_dictionary=True)["url"], target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.connect() as sync_connection:
        _run(sync_connection)
