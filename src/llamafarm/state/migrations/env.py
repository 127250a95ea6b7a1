"""Alembic environment of the state database.

`llamafarm.state.migrate` runs it with the connection to migrate in
`config.attributes["connection"]`; there is no alembic.ini and no URL of its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from llamafarm.state.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters most things only by copying the table; batch mode does that for it.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _connection() -> Connection:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "run the state migrations through llamafarm.state.migrate "
            "(or `python -m llamafarm.state.revision` to write a new one)"
        )
    return connection


_run(_connection())
