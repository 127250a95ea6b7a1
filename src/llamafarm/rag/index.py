"""What built a database's index, and whether its config still matches it.

The first file stored in a database records the embedding strategy whose vectors the collection
holds, and its fingerprint (a hash of `vector_key`: type, model, dimension, normalisation,
length), in `index.json` beside the collection (`stores/{database}/`), so it goes with it. A
config change that alters the fingerprint while the collection holds chunks marks the database
`needs_reindex`: queries go on embedding with the recorded strategy (the old index keeps
answering), and storing new chunks is refused, so one collection never mixes two models'
vectors. Once the collection is empty (its files removed) the next write records the new one.

The record also names the generation of the collection that serves: a reindex
(`tasks/reindex.py`) builds generation n+1 beside generation n and switches by replacing this
file (one `os.replace`), which every query reads; then generation n is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llamafarm.config.models import Database, EmbeddingStrategy
from llamafarm.errors import Conflict
from llamafarm.rag.embedders import vector_key

INDEX_FILE = "index.json"


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
    a reindex builds the next one beside it and switches by rewriting this file."""


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


def active_generation(folder: Path) -> int:
    """The generation of the collection that serves the database (0 before any reindex)."""
    record = read_record(folder)
    return record.generation if record else 0


def read_record(folder: Path) -> IndexRecord | None:
    try:
        raw = json.loads((folder / INDEX_FILE).read_text())
        return IndexRecord(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # unreadable: as if unrecorded; the next write records it again


def status(database: Database, folder: Path, count: Callable[[], int]) -> IndexStatus:
    """The database's index against its config; `count` (the store's chunks) is asked only
    when the fingerprints differ."""
    strategy = database.required_embedding()
    current = fingerprint_of(strategy)
    record = read_record(folder)
    stale = record is not None and record.fingerprint != current and count() > 0
    serving = EmbeddingStrategy.model_validate(record.embedding) if stale and record else strategy
    return IndexStatus(current, record, stale, serving)


def check_writable(
    database: Database, folder: Path, count: Callable[[], int], datasets: Sequence[str] = ()
) -> IndexStatus:
    """The status; NeedsReindex when new chunks may not go into the database (`datasets`, its
    datasets, named in the message)."""
    found = status(database, folder, count)
    if found.needs_reindex:
        raise NeedsReindex(reindex_message(database.name, found, datasets))
    return found


def record_write(database: Database, folder: Path, count: Callable[[], int]) -> IndexRecord:
    """Before chunks are stored: refuse a write that would mix models (NeedsReindex), record
    the strategy when the collection has none recorded (or is empty), and the time of the
    write."""
    found = check_writable(database, folder, count)
    now = time.time()
    previous = (
        found.record if found.record and found.record.fingerprint == found.fingerprint else None
    )
    record = record_of(
        database.required_embedding(),
        created_at=previous.created_at if previous else now,
        generation=found.record.generation if found.record else 0,
    )
    write_record(folder, record)
    return record


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
