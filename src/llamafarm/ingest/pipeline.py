"""The per-file pipeline: parse → chunk → extract → embed → store, with deterministic chunk ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llamafarm.config.models import (
    Database,
    DataProcessingStrategy,
    EmbeddingStrategy,
    ProjectConfig,
)
from llamafarm.events import Timeline
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import apply_extractors
from llamafarm.ingest.parsers import parse_file, select_parser
from llamafarm.rag.embedders import create_embedder
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.index import index_folder, record_write
from llamafarm.rag.stores import ChromaClients, create_store
from llamafarm.state.progress import FileState

EMBED_STEP = 256
"""Texts embedded between two cancellation checks."""


class Cancelled(Exception):
    """Raised between steps when the task this file belongs to was cancelled."""


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
    should_stop: Callable[[], bool],
    timeline: Timeline | None = None,
) -> Outcome:
    """Parse, chunk, embed and store one file; each step timed on `timeline` if given."""
    parser = select_parser(plan.strategy, filename)
    # Keys left unset are left out, so a key added to the model later keeps old fingerprints.
    fingerprint = _fingerprint(plan, parser.model_dump(mode="json", exclude_none=True))
    if stored_fingerprint == fingerprint:
        return Outcome(FileState.SKIPPED, 0, fingerprint)

    store = create_store(plan.database, project_dir=project_dir, clients=chroma)
    # Refused (a 409) when the database's index was built by another embedder; else recorded.
    record_write(plan.database, index_folder(project_dir, plan.database), store.count)
    steps = timeline or Timeline()
    with steps.step("parse", parser=parser.type) as parsed:
        document = parse_file(parser, path, filename=filename)
        parsed["characters"] = sum(len(section.text) for section in document.sections)
    _stop_if(should_stop)
    options = parser.config
    with steps.step("chunk") as chunked:
        chunks = chunk_document(
            document,
            chunk_size=int(options.get("chunk_size", 1000)),
            chunk_overlap=int(options.get("chunk_overlap", 100)),
            chunk_strategy=str(options.get("chunk_strategy", "paragraphs")),
        )
        apply_extractors(plan.strategy, filename, chunks)
        chunked["chunks"] = len(chunks)
    texts = [chunk.text for chunk in chunks]
    vectors: list[list[float]] = []
    with steps.step("embed", chunks=len(texts)):
        for start in range(0, len(texts), EMBED_STEP):
            _stop_if(should_stop)
            vectors.extend(plan.embedder.embed(texts[start : start + EMBED_STEP]))
    _stop_if(should_stop)

    base = {
        "document_id": file_hash,
        "source": filename,
        "file_hash": file_hash,
        "dataset": dataset,
    }
    metadatas = [{**chunk.metadata, **base} for chunk in chunks]
    ids = [chunk_id(dataset, file_hash, fingerprint, i) for i in range(len(chunks))]
    with steps.step("store", chunks=len(ids), database=plan.database.name):
        # Chunks of an earlier strategy, or of a run that died half-way, go once the new
        # ones are in.
        store.replace({"dataset": dataset, "file_hash": file_hash}, ids, texts, vectors, metadatas)
    return Outcome(FileState.SUCCESS, len(chunks), fingerprint)


def chunk_id(dataset: str, file_hash: str, fingerprint: str, index: int) -> str:
    key = f"{dataset}\0{file_hash}\0{fingerprint}\0{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


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
