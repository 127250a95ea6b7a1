"""Where a database's index record is kept: `index.json` beside an embedded store, or a row of
the state database in shared mode (on SQLite and PostgreSQL). Both keep the same contract; the
writers of both compare and set, so concurrent writers lose neither `created_at` nor a switch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from llamafarm.config.models import Database, EmbeddingStrategy
from llamafarm.errors import Conflict
from llamafarm.rag.index import (
    INDEX_FILE,
    RECORD_LOCK,
    FileIndexRecords,
    IndexRecords,
    NeedsReindex,
    TableIndexRecords,
    active_generation,
    fingerprint_of,
    record_of,
    record_write,
    status,
)
from llamafarm.rag.stores import ChromaClients, ChromaStore, index_records
from llamafarm.rag.stores.qdrant import QdrantStore
from llamafarm.state import StateDB
from llamafarm.state.project_rows import delete_project_rows
from llamafarm.state.tables import DatabaseIndex


def strategy(**config: Any) -> EmbeddingStrategy:
    base = {"model": "all-MiniLM-L6-v2", "dimension": 384}
    return EmbeddingStrategy(name="default", type="UniversalEmbedder", config=base | config)


def database(**config: Any) -> Database:
    return Database.model_validate(
        {
            "name": "main_db",
            "type": "ChromaStore",
            "embedding_strategies": [strategy(**config).model_dump(mode="json")],
        }
    )


A, B = strategy(), strategy(normalize=False)


@pytest.fixture(params=["file", "sqlite", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexRecords]:
    """The file, then the row on SQLite and on PostgreSQL."""
    if request.param == "file":
        yield FileIndexRecords(tmp_path / "stores" / "main_db")
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = StateDB(url)
    try:
        yield TableIndexRecords(db.engine, "acme", "bot", "main_db")
    finally:
        db.close()


def test_a_first_write_records_the_strategy_and_a_later_one_keeps_its_birth(
    records: IndexRecords,
) -> None:
    assert records.read() is None and active_generation(records) == 0
    first = records.note_write(A, seen=None)
    assert first is not None and records.read() == first
    assert (first.fingerprint, first.generation) == (fingerprint_of(A), 0)
    assert records.note_write(A, seen=None) is None  # another writer recorded one first
    again = records.note_write(A, seen=first)
    assert again is not None and again.created_at == first.created_at
    assert again.last_write >= first.last_write

    changed = records.note_write(B, seen=again)
    assert changed is not None and changed.fingerprint == fingerprint_of(B)
    assert (
        changed.created_at > first.created_at and changed.embedding["config"]["normalize"] is False
    )
    assert records.note_write(A, seen=again) is None  # read before the change: checked again


def test_a_switch_moves_the_generation_forward_once_and_writes_keep_it(
    records: IndexRecords,
) -> None:
    seen = records.note_write(A, seen=None)
    assert seen is not None
    assert not records.switch(record_of(B, created_at=1.0, generation=2))  # not from 0
    assert records.switch(record_of(B, created_at=1.0, generation=1))
    assert not records.switch(record_of(B, created_at=1.0, generation=1))  # taken already
    assert active_generation(records) == 1

    # A writer that read the record before the switch (same strategy) keeps the generation.
    before = records.read()
    assert before is not None
    written = records.note_write(B, seen=before)
    assert written is not None and written.generation == 1 and written.created_at == 1.0
    # One that read it before a switch to another embedder is told to check again.
    assert records.switch(record_of(A, created_at=2.0, generation=2))
    assert records.note_write(B, seen=before) is None
    assert active_generation(records) == 2

    records.delete()
    assert records.read() is None
    # A reindex of a database with no record yet switches from generation 0.
    assert records.switch(record_of(A, created_at=3.0, generation=1))
    assert active_generation(records) == 1


def test_record_write_refuses_another_embedder_while_the_collection_holds_chunks(
    records: IndexRecords,
) -> None:
    record_write(database(), records, lambda: 0)
    with pytest.raises(NeedsReindex):
        record_write(database(normalize=False), records, lambda: 5)
    found = status(database(normalize=False), records, lambda: 5)
    assert found.needs_reindex and found.serving.config.get("normalize") is None
    # Emptied: the next write records the new one, in the same generation.
    written = record_write(database(normalize=False), records, lambda: 0)
    assert written.fingerprint == fingerprint_of(B) and written.generation == 0


def test_concurrent_writers_agree_on_one_birth_and_never_undo_a_switch(
    records: IndexRecords,
) -> None:
    written: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def write() -> None:
        start.wait()
        try:
            for _ in range(5):
                written.append(record_write(database(), records, lambda: 1).created_at)
        except BaseException as exc:
            errors.append(exc)

    def switch() -> None:
        start.wait()
        for generation in range(1, 6):
            if not records.switch(record_of(A, created_at=99.0, generation=generation)):
                errors.append(AssertionError(f"the switch to {generation} was refused"))

    threads = [threading.Thread(target=write) for _ in range(8)]
    threads.append(threading.Thread(target=switch))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    found = records.read()
    assert found is not None and found.generation == 5 and found.created_at == 99.0
    # Writes before the switches share the first write's birth; after them, the switch's.
    births = set(written)
    assert len(written) == 40 and len(births - {99.0}) <= 1


@pytest.mark.parametrize("kind", ["chroma", "qdrant"])
def test_a_stores_drop_takes_the_record_and_keeps_its_lock_file(tmp_path: Path, kind: str) -> None:
    """Another process may hold the lock file open: one made anew beside it would not be locked
    against that process."""
    folder = tmp_path / "stores" / "main_db"
    clients = ChromaClients()
    store = (
        ChromaStore(path=folder, collection_name="docs", clients=clients)
        if kind == "chroma"
        else QdrantStore(path=folder, collection_name="docs")
    )
    store.upsert(["x"], ["hello"], [[1.0, 0.0, 0.0]], [{"dataset": "d"}])
    records = FileIndexRecords(folder)
    assert records.note_write(A, seen=None) is not None
    lock = (folder / RECORD_LOCK).stat().st_ino
    store.drop()
    assert records.read() is None and (folder / RECORD_LOCK).stat().st_ino == lock
    clients.close()


def test_the_choice_follows_the_owners_clients(tmp_path: Path, state_db: StateDB) -> None:
    project = tmp_path / "acme" / "bot"
    embedded = index_records(database(), project, ChromaClients())
    assert isinstance(embedded, FileIndexRecords)
    assert embedded.folder == project / "stores" / "main_db"
    shared = index_records(database(), project, ChromaClients(records=state_db.engine))
    assert isinstance(shared, TableIndexRecords)
    assert shared.key == {"namespace": "acme", "project": "bot", "database": "main_db"}

    record_write(database(), shared, lambda: 0)
    assert not (project / "stores" / "main_db" / INDEX_FILE).exists()
    other = TableIndexRecords(state_db.engine, "acme", "other", "main_db")
    record_write(database(), other, lambda: 0)
    delete_project_rows(state_db, namespace="acme", project="bot")  # with the project
    with state_db.session() as session:
        assert session.scalar(select(func.count()).select_from(DatabaseIndex)) == 1
    assert shared.read() is None and other.read() is not None


def test_a_record_that_keeps_changing_is_a_conflict() -> None:
    class Racing:
        """Another writer changes the record between every check and write."""

        def read(self) -> None:
            return None

        def note_write(self, strategy: EmbeddingStrategy, *, seen: object) -> None:
            return None

        def switch(self, record: object) -> bool:
            return False

        def delete(self) -> None:
            return None

    with pytest.raises(Conflict, match="kept changing"):
        record_write(database(), Racing(), lambda: 0)
