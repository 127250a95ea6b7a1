"""The per-file pipeline: parse → chunk → extract (in the parse sandbox) → embed → store, a
batch of chunks at a time, with deterministic chunk ids."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafarm.config.models import (
    Database,
    DataProcessingStrategy,
    EmbeddingStrategy,
    ProjectConfig,
)
from llamafarm.documents import Chunk, MetadataValue
from llamafarm.events import Timeline
from llamafarm.ingest.parsers import resolve, select_parser
from llamafarm.ingest.sandbox import Cancelled, Job, ParsePool, Stats
from llamafarm.rag.embedders import create_embedder
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.index import record_write
from llamafarm.rag.stores import ChromaClients, VectorStore, create_store, index_records
from llamafarm.state.progress import FileState

EMBED_STEP = 256
"""Texts embedded between two cancellation checks."""
BATCH = 256
"""Chunks parsed, embedded and stored together: what the worker holds of a file at a time."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    state: FileState
    """SUCCESS, or SKIPPED when its chunks were stored already."""
    chunks: int
    fingerprint: str


@dataclass(frozen=True)
class Plan:
    """What processing one file of a dataset needs, resolved from the project config."""

    strategy: DataProcessingStrategy
    database: Database
    embedder: Embedder


def plan(
    config: ProjectConfig,
    dataset_name: str,
    make_embedder: Callable[[EmbeddingStrategy], Embedder] = create_embedder,
) -> Plan:
    """Resolve a dataset's strategy, database and embedder (a worker passes its cached ones)."""
    dataset = config.dataset(dataset_name)
    database = config.database_of(dataset)
    return Plan(config.strategy_of(dataset), database, make_embedder(database.required_embedding()))


def process_file(
    *,
    plan: Plan,
    dataset: str,
    path: Path,
    filename: str,
    file_hash: str,
    stored_fingerprint: str | None,
    project_dir: Path,
    chroma: ChromaClients,
    parsing: ParsePool,
    should_stop: Callable[[], bool],
    on_parsed: Callable[[], None] = lambda: None,
    on_stored: Callable[[int], None] = lambda chunks: None,
    timeline: Timeline | None = None,
    generation: int | None = None,
) -> Outcome:
    """Parse (in the sandbox), chunk, embed and store one file batch by batch; `on_parsed`
    hears when the first batch of chunks comes out of the parser (embedding starts), `on_stored`
    the count of chunks stored so far after each batch. A failure or a cancel half-way
    removes the batches stored so far, so the file keeps the chunks it had before.

    `generation`: store into that collection of the database, not the serving one (a
    reindex, which records the index itself when it switches)."""
    parser = select_parser(plan.strategy, filename)
    fingerprint = file_fingerprint(plan, filename)
    if stored_fingerprint == fingerprint:
        return Outcome(FileState.SKIPPED, 0, fingerprint)

    cls, fallback = resolve(parser)
    limits = parsing.limits
    job = Job(
        parser=cls,
        fallback=fallback,
        options=parser.config,
        path=path,
        filename=filename,
        strategy=plan.strategy,
        batch=BATCH,
        max_unzipped_bytes=limits.max_unzipped_mb << 20,
        max_zip_ratio=limits.max_zip_ratio,
    )
    where: dict[str, MetadataValue] = {"dataset": dataset, "file_hash": file_hash}
    base = {
        "document_id": file_hash,
        "source": filename,
        "file_hash": file_hash,
        "dataset": dataset,
    }
    store = create_store(
        plan.database, project_dir=project_dir, clients=chroma, generation=generation
    )
    if generation is None:
        # Refused (a 409) when the database's index was built by another embedder; else
        # recorded.
        records = index_records(plan.database, project_dir, chroma)
        record_write(plan.database, records, store.count)
    steps = _Steps(timeline or Timeline(), parser.type, plan.database.name)
    stored: list[str] = []
    try:
        with parsing.run(job, should_stop) as run:
            batches = iter(run)
            try:
                while (batch := _next(batches, steps)) is not None:
                    if not stored:
                        on_parsed()
                    ids = [
                        chunk_id(dataset, file_hash, fingerprint, int(c.metadata["chunk_index"]))
                        for c in batch
                    ]
                    texts = [chunk.text for chunk in batch]
                    with steps.timed("embed"):
                        vectors = _embed(plan.embedder, texts, should_stop)
                    _stop_if(should_stop)
                    stored.extend(ids)  # first: a write that fails half-way is removed too
                    with steps.timed("store"):
                        store.upsert(ids, texts, vectors, [{**c.metadata, **base} for c in batch])
                    on_stored(len(stored))
            finally:
                steps.stats, steps.waited_s = run.stats, run.waited_s
        _stop_if(should_stop)
        with steps.timed("store"):
            # Chunks of an earlier strategy, or of a run that died half-way, go once all the
            # new ones are in.
            store.delete(where, keep=stored)
    except BaseException:
        _remove(store, stored, filename)
        raise
    finally:
        steps.record(len(stored))
    return Outcome(FileState.SUCCESS, len(stored), fingerprint)


def _next(batches: Iterator[list[Chunk]], steps: _Steps) -> list[Chunk] | None:
    """The parse process's next batch; its failure (or a cancel while waiting on it) is the
    parse step's error."""
    try:
        return next(batches, None)
    except BaseException as exc:
        steps.errors["parse"] = type(exc).__name__
        raise


def _embed(embedder: Embedder, texts: list[str], should_stop: Callable[[], bool]) -> list[Any]:
    vectors: list[Any] = []
    for start in range(0, len(texts), EMBED_STEP):
        _stop_if(should_stop)
        vectors.extend(embedder.embed(texts[start : start + EMBED_STEP]))
    return vectors


def _remove(store: VectorStore, ids: list[str], filename: str) -> None:
    """Take out the batches of a run that did not finish; the file's earlier chunks stay."""
    if not ids:
        return
    try:
        store.remove(ids)
    except Exception:
        log.exception("could not remove the %d chunks stored of %s", len(ids), filename)


class _Steps:
    """The file's timeline: parse, chunk, embed and store, each its total over the batches
    (they interleave), all from when the file began; a failed step carries its error."""

    def __init__(self, timeline: Timeline, parser: str, database: str) -> None:
        self.timeline, self.parser, self.database = timeline, parser, database
        self.begun_ms = timeline.elapsed_ms()
        self.seconds = {"embed": 0.0, "store": 0.0}
        self.errors: dict[str, str] = {}
        self.stats: Stats | None = None
        self.waited_s = 0.0

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.errors.setdefault(step, type(exc).__name__)
            raise
        finally:
            self.seconds[step] += time.perf_counter() - begun

    def record(self, stored: int) -> None:
        stats, errors, at = self.stats, self.errors, self.begun_ms
        add = self.timeline.span
        parse: dict[str, Any] = {"parser": self.parser}
        if stats is not None:
            parse.update(characters=stats.characters, streamed=stats.streamed)
        if "parse" in errors:
            parse["error"] = errors["parse"]
        add("parse", at, at + (stats.parse_s if stats else self.waited_s) * 1000, **parse)
        if "parse" in errors:
            return
        if stats is not None:
            add("chunk", at, at + stats.chunk_s * 1000, chunks=stats.chunks)
        for step in ("embed", "store"):
            data: dict[str, Any] = {"chunks": stored}
            if step == "store":
                data["database"] = self.database
            if step in errors:
                data["error"] = errors[step]
            add(step, at, at + self.seconds[step] * 1000, **data)


def chunk_id(dataset: str, file_hash: str, fingerprint: str, index: int) -> str:
    key = f"{dataset}\0{file_hash}\0{fingerprint}\0{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def file_fingerprint(plan: Plan, filename: str) -> str:
    """What decides a file's chunks and vectors: its parser (as the strategy picks it for the
    name), the extractors, the embedder and the database. A file stored with the same one is
    skipped."""
    parser = select_parser(plan.strategy, filename)
    # Keys left unset are left out, so a key added to the model later keeps old fingerprints.
    return _fingerprint(plan, parser.model_dump(mode="json", exclude_none=True))


def _fingerprint(plan: Plan, parser: object) -> str:
    extractors = [e.model_dump(mode="json") for e in plan.strategy.extractors]
    key = json.dumps(
        {
            "parser": parser,
            "extractors": extractors,
            "embedder": plan.embedder.fingerprint(),
            "database": plan.database.name,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _stop_if(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise Cancelled
