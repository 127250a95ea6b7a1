"""The migration lock: one process at a time upgrades a state database.

PostgreSQL: a session advisory lock on a fixed key (released by the server when the holder's
connection dies). SQLite: `flock` on a file beside the database (released by the kernel when
the holder dies). Both are polled until a deadline, then `MigrationRefused` says who to wait
for. An in-memory SQLite database belongs to one process and needs no lock.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from llamafarm.errors import MigrationRefused

# Any fixed bigint works; every llamafarm process must use the same one ("lfmigrat").
PG_LOCK_KEY = 0x6C666D6967726174
POLL_SECONDS = 0.2


def shown(engine: Engine) -> str:
    """The database's URL, safe to print (no password)."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def migration_lock(engine: Engine, *, timeout: float) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, timeout):
            yield
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with _file_lock(engine, Path(f"{database}.migration-lock"), timeout):
            yield
        return
    yield


@contextmanager
def _advisory_lock(engine: Engine, timeout: float) -> Iterator[None]:
    with engine.connect() as connection:
        deadline = time.monotonic() + timeout
        while not connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": PG_LOCK_KEY}
        ):
            connection.commit()  # not idle in a transaction while we wait
            if time.monotonic() >= deadline:
                raise _held(
                    engine,
                    timeout,
                    "if no other lf start / lf worker is running, find the session holding "
                    f"advisory lock {PG_LOCK_KEY} in pg_locks",
                )
            time.sleep(POLL_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            connection.commit()


@contextmanager
def _file_lock(engine: Engine, path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _held(engine, timeout, f"the lock is {path}") from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _held(engine: Engine, timeout: float, hint: str) -> MigrationRefused:
    return MigrationRefused(
        f"another llamafarm process is migrating the state database {shown(engine)} "
        f"(it still held the migration lock after {timeout:g} s). Let it finish and start "
        f"again, or give it longer with LF_MIGRATION_LOCK_TIMEOUT; {hint}."
    )
