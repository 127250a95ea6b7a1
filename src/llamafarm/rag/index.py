"""What built a database's index, and whether its config still matches it.

The first file stored in a database records the embedding strategy whose vectors the collection
holds, and its fingerprint (a hash of `vector_key`: type, model, dimension, normalisation,
length), in `index.json` beside the collection (`stores/{database}/`), so it goes with it. A
config change that alters the fingerprint while the collection holds chunks marks the database
`needs_reindex`: queries go on embedding with the recorded strategy (the old index keeps
answering), and storing new chunks is refused, so one collection never mixes two models'
vectors. Once the collection is empty (its files removed) the next write records the new one.

The record also names the generation of the collection that serves: a reindex
(`tasks/reindex.py`) builds generation n+1 beside generation n and switches by replacing the
record (`IndexRecords.switch`), which every query reads; then generation n is dropped.

In shared mode (`LF_BLOB_STORE=database`) the record is a row of the state database
(`TableIndexRecords`) instead of the file (`FileIndexRecords`), so every API replica and worker
reads the same one: a switch is one UPDATE, seen by all at once, and a worker on another machine
is refused a write once the embedder changed. `rag.stores.index_records` picks one. Writers
compare and set (the file under a lock, the row in one statement): a write's record is stored
only while the record is still the one its check read, so two writers never lose `created_at`,
and only a switch moves the generation, from the one it replaces to the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from llamafarm.config.models import Database, EmbeddingStrategy
from llamafarm.errors import Conflict
from llamafarm.rag.embedders import vector_key
from llamafarm.state.tables import DatabaseIndex

INDEX_FILE = "index.json"
RECORD_LOCK = ".lf-index-lock"
"""Its lock file, beside it: a store's drop keeps it, as its own lock file, since another
process may hold it open."""
WRITE_TRIES = 5
"""Times a write's record is tried while other writers change the record under it."""


@dataclass(frozen=True)
class IndexRecord:
    """`index.json`: what built a collection."""

    fingerprint: str
    embedding: dict[str, Any]
    """The embedding strategy (name, type, config) whose vectors the collection holds."""
    vectors: dict[str, Any]
    """Its `vector_key`, for people reading the file or `rag/stats`."""
    created_at: float
    last_write: float
    generation: int = 0
    """Which of the database's collections serves (`collection_name`, then `_g1`, `_g2`...):
    a reindex builds the next one beside it and switches by replacing the record."""


@dataclass(frozen=True)
class IndexStatus:
    fingerprint: str
    """The fingerprint of the database's embedding strategy as configured now."""
    record: IndexRecord | None
    needs_reindex: bool
    serving: EmbeddingStrategy
    """The strategy to embed queries with: the recorded one while a reindex is needed."""


class NeedsReindex(Conflict):
    """Storing chunks into a database whose index was built by another embedder."""


def fingerprint_of(strategy: EmbeddingStrategy) -> str:
    key = json.dumps(vector_key(strategy), sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def index_folder(project_dir: Path, database: Database) -> Path:
    """Where a database's store keeps its files (`create_store`'s folder)."""
    return project_dir / "stores" / database.name


class IndexRecords(Protocol):
    """Where a database's record is kept."""

    def read(self) -> IndexRecord | None: ...

    def note_write(
        self, strategy: EmbeddingStrategy, *, seen: IndexRecord | None
    ) -> IndexRecord | None:
        """Record that `strategy` stores chunks now, if the record is still the one `seen`
        (by fingerprint; None: none recorded): its `created_at` kept when the fingerprint is,
        its generation always. None when another writer changed the record first."""
        ...

    def switch(self, record: IndexRecord) -> bool:
        """Make `record` the record if the generation before its own still serves (a
        reindex's switch); False when it does not."""
        ...

    def delete(self) -> None: ...


class FileIndexRecords:
    """`index.json` in the store's folder, which goes with it (and with its drop). A change
    reads, compares and replaces the file under the folder's `RECORD_LOCK` (an flock, which
    threads of one process hold apart too), so writers in any process on the machine cannot
    undo each other."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self) -> IndexRecord | None:
        return read_record(self.folder)

    def note_write(
        self, strategy: EmbeddingStrategy, *, seen: IndexRecord | None
    ) -> IndexRecord | None:
        with self._locked():
            current = self.read()
            if _fingerprint(current) != _fingerprint(seen):
                return None
            same = current is not None and current.fingerprint == fingerprint_of(strategy)
            record = record_of(
                strategy,
                created_at=current.created_at if current and same else time.time(),
                generation=current.generation if current else 0,
            )
            write_record(self.folder, record)
            return record

    def switch(self, record: IndexRecord) -> bool:
        with self._locked():
            current = self.read()
            if (current.generation if current else 0) != record.generation - 1:
                return False
            write_record(self.folder, record)
            return True

    def delete(self) -> None:
        (self.folder / INDEX_FILE).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / RECORD_LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield


class TableIndexRecords:
    """A `database_indexes` row of the state database (shared mode). Each change is one
    statement guarded by what the writer read (the fingerprint, or for a switch the generation),
    so concurrent writers on any machine cannot undo each other."""

    def __init__(self, engine: Engine, namespace: str, project: str, database: str) -> None:
        self.engine = engine
        self.key = {"namespace": namespace, "project": project, "database": database}

    def _where(self) -> list[Any]:
        return [getattr(DatabaseIndex, k) == v for k, v in self.key.items()]

    def read(self) -> IndexRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(self._select()).mappings().one_or_none()
        return None if row is None else _from_row(row)

    def _select(self) -> Any:
        return select(DatabaseIndex.__table__).where(*self._where())

    def note_write(
        self, strategy: EmbeddingStrategy, *, seen: IndexRecord | None
    ) -> IndexRecord | None:
        now = time.time()
        written = record_of(strategy, created_at=now, generation=0)
        values: dict[str, Any] = {
            "fingerprint": written.fingerprint,
            "embedding": written.embedding,
            "vectors": written.vectors,
            "last_write": now,
        }
        try:
            with self.engine.begin() as connection:
                if seen is None:
                    connection.execute(
                        insert(DatabaseIndex).values(
                            **self.key, **values, created_at=now, generation=0
                        )
                    )
                else:
                    if written.fingerprint != seen.fingerprint:
                        values["created_at"] = now
                    # Not the generation: a switch between the check and this write stays.
                    changed = connection.execute(
                        update(DatabaseIndex)
                        .where(*self._where(), DatabaseIndex.fingerprint == seen.fingerprint)
                        .values(**values)
                    )
                    if cast(CursorResult[Any], changed).rowcount != 1:
                        return None
                row = connection.execute(self._select()).mappings().one()
        except IntegrityError:
            return None  # another writer recorded the first write meanwhile
        return _from_row(row)

    def switch(self, record: IndexRecord) -> bool:
        values = asdict(record)
        for _ in range(2):
            with self.engine.begin() as connection:
                switched = connection.execute(
                    update(DatabaseIndex)
                    .where(*self._where(), DatabaseIndex.generation == record.generation - 1)
                    .values(**values)
                )
                if cast(CursorResult[Any], switched).rowcount == 1:
                    return True
            if record.generation != 1:
                return False
            try:  # from generation 0 with no record yet
                with self.engine.begin() as connection:
                    connection.execute(insert(DatabaseIndex).values(**self.key, **values))
            except IntegrityError:
                continue  # a first write recorded generation 0 meanwhile: switch from it
            return True
        return False

    def delete(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(DatabaseIndex).where(*self._where()))


def _fingerprint(record: IndexRecord | None) -> str | None:
    return None if record is None else record.fingerprint


def _from_row(row: RowMapping) -> IndexRecord:
    return IndexRecord(
        fingerprint=row["fingerprint"],
        embedding=dict(row["embedding"]),
        vectors=dict(row["vectors"]),
        created_at=row["created_at"],
        last_write=row["last_write"],
        generation=row["generation"],
    )


def active_generation(records: IndexRecords) -> int:
    """The generation of the collection that serves the database (0 before any reindex)."""
    record = records.read()
    return record.generation if record else 0


def read_record(folder: Path) -> IndexRecord | None:
    try:
        raw = json.loads((folder / INDEX_FILE).read_text())
        return IndexRecord(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # unreadable: as if unrecorded; the next write records it again


def status(database: Database, records: IndexRecords, count: Callable[[], int]) -> IndexStatus:
    """The database's index against its config; `count` (the store's chunks) is asked only
    when the fingerprints differ."""
    return status_of(database, records.read(), count)


def status_of(
    database: Database, record: IndexRecord | None, count: Callable[[], int]
) -> IndexStatus:
    """`status` with the record read already."""
    strategy = database.required_embedding()
    current = fingerprint_of(strategy)
    stale = record is not None and record.fingerprint != current and count() > 0
    serving = EmbeddingStrategy.model_validate(record.embedding) if stale and record else strategy
    return IndexStatus(current, record, stale, serving)


def check_writable(
    database: Database,
    records: IndexRecords,
    count: Callable[[], int],
    datasets: Sequence[str] = (),
) -> IndexStatus:
    """The status; NeedsReindex when new chunks may not go into the database (`datasets`, its
    datasets, named in the message)."""
    found = status(database, records, count)
    if found.needs_reindex:
        raise NeedsReindex(reindex_message(database.name, found, datasets))
    return found


def record_write(
    database: Database, records: IndexRecords, count: Callable[[], int]
) -> IndexRecord:
    """Before chunks are stored: refuse a write that would mix models (NeedsReindex), record
    the strategy when the collection has none recorded (or is empty), and the time of the
    write. Checked again when another writer changed the record between the check and the
    write."""
    for _ in range(WRITE_TRIES):
        found = check_writable(database, records, count)
        written = records.note_write(database.required_embedding(), seen=found.record)
        if written is not None:
            return written
    raise Conflict(
        f"The index record of database {database.name!r} kept changing while this write was "
        "recorded (other writers with other embedders?); try again"
    )


def record_of(strategy: EmbeddingStrategy, *, created_at: float, generation: int) -> IndexRecord:
    """The record of a collection built by `strategy`, written to now."""
    return IndexRecord(
        fingerprint=fingerprint_of(strategy),
        embedding=strategy.model_dump(mode="json", include={"name", "type", "config"}),
        vectors=vector_key(strategy),
        created_at=created_at,
        last_write=time.time(),
        generation=generation,
    )


def write_record(folder: Path, record: IndexRecord) -> None:
    """Replaced whole, so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{INDEX_FILE}.{os.getpid()}.{time.monotonic_ns()}"
    partial.write_text(json.dumps(asdict(record), sort_keys=True))
    os.replace(partial, folder / INDEX_FILE)


def reindex_message(name: str, found: IndexStatus, datasets: Sequence[str] = ()) -> str:
    """Why a database needs a reindex, and how to do it: its datasets' chunks cleared and
    processed again with the new embedder (or the old strategy put back)."""
    built = found.record.vectors if found.record else {}
    clear = " and ".join(f"`lf rag clear {d}`" for d in datasets) or "`lf rag clear DATASET`"
    return (
        f"Database {name!r} needs a reindex: its embedder changed since its chunks were "
        f"stored (built with {built.get('type')} {built.get('model')!r}, fingerprint "
        f"{found.record.fingerprint if found.record else '?'}; configured now: "
        f"{found.fingerprint}), and one collection never holds two models' vectors. Queries "
        f"still use the old index. Rebuild it with the new embedder while it keeps answering: "
        f"`lf rag reindex {name}` (POST .../rag/databases/{name}/reindex); or clear its chunks "
        f"({clear}) and process its datasets again; or put the old embedding strategy back"
    )
