"""Engine and sessions for the state database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from llamafarm.state.migrate import upgrade


class StateDB:
    """One engine per process; `session()` is a unit of work that commits or rolls back."""

    def __init__(self, url: str, *, migration_lock_timeout: float = 60.0) -> None:
        """Open the database and bring its schema to head (see `llamafarm.state.migrate`)."""
        self.url = _with_driver(url)
        self.engine = _create_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            upgrade(self.engine, lock_timeout=migration_lock_timeout)
        except BaseException:
            self.engine.dispose()
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _with_driver(url: str) -> str:
    # psycopg 3 is the PostgreSQL driver we ship; plain postgresql:// would ask for psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _wal(cursor: Any, *, patience: float = 30.0) -> None:
    """Put the database in WAL mode (kept in the file: once one connection did, the others
    find it so). Changing the mode needs the database to itself, and SQLite answers "database
    is locked" at once, without its busy timeout, when another connection is in a transaction:
    seen when several processes open a new database together while one migrates it."""
    deadline = time.monotonic() + patience
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        _wal(cursor)  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
