"""Versioning of the state database: Alembic brings it to the newest schema before anything
serves from it.

`upgrade` runs on every `StateDB` (so `lf start`, `lf worker` and the app's lifespan): a
database at head costs one query; otherwise it takes the migration lock (`locks.py`), looks
again, and upgrades. A database that `create_all` made before the schema was versioned is
recognised by its tables and stamped `0001_initial` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from llamafarm.errors import MigrationRefused
from llamafarm.state.locks import migration_lock, shown

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001_initial"
VERSION_TABLE = "alembic_version"  # Alembic's default

# What `Base.metadata.create_all` made in 0.1.0, before the schema was versioned: a database
# with exactly these tables and columns and no alembic_version table is at BASELINE.
# Frozen: never edit it when tables.py changes.
UNVERSIONED: dict[str, str] = {
    "dataset_files": (
        "id namespace project dataset file_hash filename size uploaded_at fingerprint "
        "chunk_count processed_at"
    ),
    "tasks": "task_id namespace project dataset created_at cancelled_at cancel_report",
    "task_files": (
        "id task_id file_hash filename state chunks error error_type traceback worker "
        "attempts started_at finished_at"
    ),
    "worker_heartbeats": "worker pid last_seen",
    "chat_sessions": (
        "id namespace project session_id created_at last_used_at ttl next_seq lock_owner "
        "lock_expires"
    ),
    "chat_messages": "id session_pk seq role content created_at",
    "event_logs": "id event_id namespace project type timestamp summary data sub_events",
}


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: the scripts inside this package, and
    the connection env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Revision files are named by their id alone: versions/0002_api_keys.py.
    config.set_main_option("file_template", "%%(rev)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    """The migration scripts shipped with this version (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    revision = scripts().get_current_head()
    if revision is None:  # pragma: no cover - the package always ships 0001_initial
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return revision


def current(connection: Connection) -> tuple[str, ...]:
    """The revisions recorded in the database (none when it was never versioned)."""
    # Read directly: MigrationContext would log two INFO lines on every start.
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    return tuple(connection.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))


def upgrade(engine: Engine, *, lock_timeout: float) -> None:
    """Bring the database to head, or raise `MigrationRefused` saying why not."""
    with engine.connect() as connection:
        if _at_head(engine, connection):
            return
    with migration_lock(engine, timeout=lock_timeout), _transaction(engine) as connection:
        # Whoever held the lock before us may have done the work.
        if _at_head(engine, connection):
            return
        config = alembic_config(connection)
        if not current(connection) and _is_unversioned_baseline(engine, connection):
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction around the whole upgrade. On SQLite too: its driver runs DDL outside any
    transaction, so a crash in a batch migration (copy, drop, rename) would leave half of it."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        driver: Any = connection.connection.driver_connection
        legacy = driver.isolation_level
        driver.isolation_level = None  # the driver's implicit BEGINs off: we say it ourselves
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            driver.isolation_level = legacy


def _at_head(engine: Engine, connection: Connection) -> bool:
    revisions = current(connection)
    known = {script.revision for script in scripts().walk_revisions()}
    unknown = [revision for revision in revisions if revision not in known]
    if unknown:
        raise MigrationRefused(
            f"the state database {shown(engine)} is at schema revision {', '.join(unknown)}, "
            f"which this llamafarm version does not know (its newest is {head()}): a newer "
            "llamafarm has upgraded it. Run that newer version, or point LF_DATABASE_URL / "
            "LF_DATA_DIR at another database."
        )
    return revisions == (head(),)


def _is_unversioned_baseline(engine: Engine, connection: Connection) -> bool:
    """True for a database `create_all` made before versioning; False for an empty one."""
    inspector = inspect(connection)
    present = set(inspector.get_table_names()) & UNVERSIONED.keys()
    if not present:
        return False
    problems = [f"table {name} is missing" for name in sorted(UNVERSIONED.keys() - present)]
    for name in sorted(present):
        columns = {column["name"] for column in inspector.get_columns(name)}
        expected = set(UNVERSIONED[name].split())
        if columns != expected:
            problems.append(
                f"{name} has columns {sorted(columns - expected)} more and "
                f"{sorted(expected - columns)} fewer"
            )
    if problems:
        raise MigrationRefused(
            f"the state database {shown(engine)} has llamafarm tables but no schema version, "
            f"and they are not those of llamafarm 0.1.0 ({'; '.join(problems)}), so it cannot "
            "be upgraded safely. Point LF_DATABASE_URL / LF_DATA_DIR at a new database, or "
            "move this one aside."
        )
    return True
