"""The state schema is versioned: old databases upgrade with their rows, newer ones and a held
migration lock are refused with a clear message, and tables.py matches the migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from llamafarm.errors import MigrationRefused
from llamafarm.state import ChatMessage, ChatSession, EventLog, FileRecord, StateDB, TaskRecord
from llamafarm.state.db import _with_driver
from llamafarm.state.locks import migration_lock
from llamafarm.state.migrate import alembic_config, head
from llamafarm.state.tables import Base

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on SQLite, then on PostgreSQL (the same test twice)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return _with_driver(request.getfixturevalue("postgres_url"))


def run_sql(url: str, *statements: str, **params: object) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement), params)
    finally:
        engine.dispose()


def create_0_1_0(url: str) -> None:
    """The schema exactly as llamafarm 0.1.0's create_all made it (frozen DDL, not tables.py)."""
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    ddl = (HERE / f"schema_0_1_0.{dialect}.sql").read_text(encoding="utf-8")
    lines = [line for line in ddl.splitlines() if not line.startswith("--")]
    run_sql(url, *(s for s in "\n".join(lines).split(";") if s.strip()))


def revisions(url: str) -> tuple[str, ...]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def schema_diffs(db: StateDB) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))


@pytest.fixture
def opened(url: str) -> Iterator[list[StateDB]]:
    """StateDBs a test opens, closed afterwards."""
    dbs: list[StateDB] = []
    yield dbs
    for db in dbs:
        db.close()


def test_a_0_1_0_database_upgrades_to_head_with_its_rows(url: str, opened: list[StateDB]) -> None:
    create_0_1_0(url)
    run_sql(
        url,
        "INSERT INTO dataset_files (namespace, project, dataset, file_hash, filename, size,"
        " uploaded_at, fingerprint, chunk_count, processed_at) VALUES"
        " ('ns', 'p', 'docs', 'abc', 'a.txt', 12, 1.5, 'fp', 3, 2.5)",
        "INSERT INTO tasks (task_id, namespace, project, dataset, created_at, cancel_report)"
        " VALUES ('t1', 'ns', 'p', 'docs', 1.0, :report)",
        "INSERT INTO task_files (task_id, file_hash, filename, state, chunks, attempts)"
        " VALUES ('t1', 'abc', 'a.txt', 'SUCCESS', 3, 1)",
        "INSERT INTO chat_sessions (id, namespace, project, session_id, created_at,"
        " last_used_at, ttl, next_seq) VALUES (7, 'ns', 'p', 's1', 1.0, 2.0, 3600, 2)",
        "INSERT INTO chat_messages (session_pk, seq, role, content, created_at) VALUES"
        " (7, 0, 'user', 'hello', 1.0), (7, 1, 'assistant', 'hi there', 1.1)",
        "INSERT INTO event_logs (event_id, namespace, project, type, timestamp, summary, data,"
        " sub_events) VALUES ('ev1', 'ns', 'p', 'chat', 1.0, :summary, '{}', '[]')",
        report='{"cancelled": 0}',
        summary='{"model": "m"}',
    )
    assert revisions(url) == ()

    # What `lf start`, `lf worker` and the app's lifespan do.
    db = StateDB(url, migration_lock_timeout=5)
    opened.append(db)

    assert revisions(url) == (head(),)
    assert schema_diffs(db) == []
    with db.session() as session:
        record = session.scalars(select(FileRecord)).one()
        assert (record.filename, record.size, record.chunk_count) == ("a.txt", 12, 3)
        task = session.get(TaskRecord, "t1")
        assert task is not None and task.cancel_report == {"cancelled": 0}
        assert [(f.filename, f.state) for f in task.files] == [("a.txt", "SUCCESS")]
        chat = session.scalars(select(ChatSession)).one()
        assert (chat.session_id, chat.next_seq) == ("s1", 2)
        messages = session.scalars(select(ChatMessage).order_by(ChatMessage.seq)).all()
        assert [(m.role, m.content) for m in messages] == [
            ("user", "hello"),
            ("assistant", "hi there"),
        ]
        event = session.scalars(select(EventLog)).one()
        assert (event.event_id, event.summary, event.sub_events) == ("ev1", {"model": "m"}, [])


def test_a_fresh_database_is_built_by_the_migrations_and_matches_tables_py(
    url: str, opened: list[StateDB]
) -> None:
    """What catches a column added to tables.py without a migration."""
    opened.append(StateDB(url))
    assert revisions(url) == (head(),)
    assert schema_diffs(opened[0]) == []


def test_the_migrations_downgrade_and_upgrade_again(url: str, opened: list[StateDB]) -> None:
    opened.append(StateDB(url))
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    opened.append(StateDB(url))
    assert schema_diffs(opened[1]) == []


def test_a_database_from_a_newer_version_is_refused(url: str, opened: list[StateDB]) -> None:
    opened.append(StateDB(url))
    run_sql(url, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(MigrationRefused, match="9999_from_the_future") as refused:
        StateDB(url)
    assert "newer llamafarm" in refused.value.detail
    assert revisions(url) == ("9999_from_the_future",)


def test_an_unversioned_database_unlike_0_1_0_is_refused(url: str) -> None:
    create_0_1_0(url)
    run_sql(url, "DROP TABLE worker_heartbeats")
    with pytest.raises(MigrationRefused, match="table worker_heartbeats is missing"):
        StateDB(url)
    assert revisions(url) == ()


def test_a_held_migration_lock_makes_the_next_opener_wait_then_refuse(url: str) -> None:
    holder = create_engine(url)
    try:
        with (
            migration_lock(holder, timeout=1),
            pytest.raises(MigrationRefused, match="another llamafarm process is migrating") as e,
        ):
            StateDB(url, migration_lock_timeout=0.3)
    finally:
        holder.dispose()
    assert "LF_MIGRATION_LOCK_TIMEOUT" in e.value.detail
    assert "state" in e.value.detail  # names the database
    assert revisions(url) == ()


def test_concurrent_openers_take_turns(url: str, opened: list[StateDB]) -> None:
    """An API and several workers starting at once: one migrates, the others find head."""
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(StateDB(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert revisions(url) == (head(),)
    assert schema_diffs(opened[0]) == []


def stamped_newer(data_dir: Path) -> None:
    url = f"sqlite:///{data_dir / 'state.db'}"
    StateDB(url).close()
    run_sql(url, "UPDATE alembic_version SET version_num = '9999_from_the_future'")


@pytest.mark.slow
@pytest.mark.parametrize("cli", [["start", "--port", "0"], ["worker"]])
def test_lf_start_and_worker_refuse_a_newer_database(tmp_path: Path, cli: list[str]) -> None:
    stamped_newer(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "llamafarm.cli", *cli, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        env={k: v for k, v in os.environ.items() if k != "LF_DATABASE_URL"},
    )
    assert result.returncode == 1
    assert "9999_from_the_future" in result.stderr
    assert "Traceback" not in result.stderr
