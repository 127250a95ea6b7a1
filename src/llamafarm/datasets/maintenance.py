"""Looking into and clearing a project's RAG databases: stats, the documents stored, the
chunks of a file or a dataset removed (the files stay, to process again), a file's chunks
previewed without storing anything. LlamaFarm's names and shapes where it has them."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select, update

from llamafarm.config.models import Database, DataProcessingStrategy, ProjectConfig
from llamafarm.datasets.blobs import check_hash
from llamafarm.datasets.service import (
    clean_filename,
    dataset_store,
    find_dataset,
    find_file,
    in_project,
)
from llamafarm.errors import BadRequest, NotFound, ParseFailed, PayloadTooLarge
from llamafarm.formats import iso_time
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import apply_extractors
from llamafarm.ingest.parsers import parse_file, select_parser
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.embedders import vector_key
from llamafarm.rag.embedders.reuse import CACHE_FILE, VectorCache
from llamafarm.rag.index import index_folder, status
from llamafarm.rag.service import find_database
from llamafarm.rag.stores import ChromaClients, create_store, index_records
from llamafarm.state import FileRecord, StateDB

LEXICAL_SUFFIX = ".lexical.sqlite3"


@dataclass(frozen=True)
class EmbedderInfo:
    strategy: str
    type: str
    model: str | None


@dataclass(frozen=True)
class CacheInfo:
    entries: int
    size_bytes: int
    max_bytes: int


@dataclass(frozen=True)
class DatabaseStats:
    """LlamaFarm's `rag stats` fields, and the index's fingerprint and embedding cache."""

    database: str
    vector_count: int
    document_count: int
    chunk_count: int
    collection_size_bytes: int
    """Bytes on disk of the database's folder (its vectors and lexical index, not the cache)."""
    index_size_bytes: int
    """Of those, the lexical (BM25) index's."""
    embedding_dimension: int
    distance_metric: str
    last_updated: str | None
    """When chunks were last written (ISO 8601, UTC); None before the first."""
    embedder: EmbedderInfo
    fingerprint: str
    """The configured embedder's; `index_fingerprint` is what built the stored chunks."""
    index_fingerprint: str | None
    needs_reindex: bool
    embedding_cache: CacheInfo
    datasets: list[str]


@dataclass(frozen=True)
class StoredDocument:
    """A stored file of a database, as LlamaFarm's document listing shows it."""

    id: str
    filename: str
    chunk_count: int
    size_bytes: int
    parser_used: str
    date_ingested: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class FileChunksDeleted:
    message: str
    file_hash: str
    deleted_chunks: int


@dataclass(frozen=True)
class DatasetChunksDeleted:
    message: str
    total_deleted_chunks: int
    total_files_cleared: int
    total_files_failed: int


def database_stats(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    database: str | None,
    chroma: ChromaClients,
    cache_bytes: int,
) -> DatabaseStats:
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    project_dir = projects.path(ref.namespace, ref.project)
    store = create_store(chosen, project_dir=project_dir, clients=chroma)
    folder = index_folder(project_dir, chosen)
    found = status(chosen, index_records(chosen, project_dir, chroma), store.count)
    chunks = store.count()
    names = _datasets_of(config, chosen)
    with db.session() as session:
        documents = session.scalar(
            select(func.count())
            .select_from(FileRecord)
            .where(in_project(ref), FileRecord.dataset.in_(names), _stored())
        )
    strategy = found.serving
    built = found.record.vectors if found.record else vector_key(strategy)
    entries, cached = VectorCache(folder / CACHE_FILE, max_bytes=cache_bytes).size()
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    sizes = {p: p.stat().st_size for p in files if not p.name.startswith(CACHE_FILE)}
    distance = chosen.config.get("distance_function") or chosen.config.get("distance_metric")
    return DatabaseStats(
        database=chosen.name,
        vector_count=chunks,
        document_count=int(documents or 0),
        chunk_count=chunks,
        collection_size_bytes=sum(sizes.values()),
        index_size_bytes=sum(s for p, s in sizes.items() if LEXICAL_SUFFIX in p.name),
        embedding_dimension=int(built.get("dimension") or 0),
        distance_metric=str(distance or "cosine"),
        last_updated=iso_time(found.record.last_write) if found.record else None,
        embedder=EmbedderInfo(strategy.name, strategy.type, built.get("model")),
        fingerprint=found.fingerprint,
        index_fingerprint=found.record.fingerprint if found.record else None,
        needs_reindex=found.needs_reindex,
        embedding_cache=CacheInfo(entries, cached, cache_bytes),
        datasets=names,
    )


def list_documents(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    database: str,
    limit: int,
    offset: int,
) -> list[StoredDocument]:
    """The stored files of the database's datasets, by file name, a page at a time."""
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    names = _datasets_of(config, chosen)
    with db.session() as session:
        records = session.scalars(
            select(FileRecord)
            .where(in_project(ref), FileRecord.dataset.in_(names), _stored())
            .order_by(FileRecord.filename, FileRecord.dataset, FileRecord.id)
            .offset(offset)
            .limit(limit)
        ).all()
    strategies = {name: config.strategy_of(config.dataset(name)) for name in names}
    return [
        StoredDocument(
            id=r.file_hash,
            filename=r.filename,
            chunk_count=r.chunk_count,
            size_bytes=r.size,
            parser_used=_parser(strategies[r.dataset], r.filename),
            date_ingested=iso_time(r.processed_at or r.uploaded_at),
            metadata={"dataset": r.dataset, "file_hash": r.file_hash},
        )
        for r in records
    ]


def delete_file_chunks(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    dataset: str,
    file_hash: str,
    chroma: ChromaClients,
) -> FileChunksDeleted:
    """Remove a file's chunks; the file stays in the dataset, to process again."""
    check_hash(file_hash)
    store = dataset_store(projects, ref, dataset, chroma)
    record = find_file(db, ref, dataset, file_hash)
    deleted = store.delete({"dataset": dataset, "file_hash": file_hash})
    with db.session() as session:
        session.execute(
            update(FileRecord)
            .where(FileRecord.id == record.id)
            .values(fingerprint=None, chunk_count=0)
        )
    return FileChunksDeleted("Chunks deleted successfully", file_hash, deleted)


def delete_dataset_chunks(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    dataset: str,
    chroma: ChromaClients,
) -> DatasetChunksDeleted:
    """Remove the chunks of every file of a dataset; the files stay, to process again."""
    store = dataset_store(projects, ref, dataset, chroma)
    deleted = store.delete({"dataset": dataset})
    with db.session() as session:
        cleared = session.execute(
            update(FileRecord)
            .where(in_project(ref), FileRecord.dataset == dataset, _stored())
            .values(fingerprint=None, chunk_count=0)
            .execution_options(synchronize_session=False)
        )
    return DatasetChunksDeleted(
        "All chunks deleted successfully",
        total_deleted_chunks=deleted,
        total_files_cleared=int(getattr(cleared, "rowcount", 0) or 0),
        total_files_failed=0,
    )


@dataclass(frozen=True)
class ChunkPreview:
    chunk_index: int
    content: str
    char_count: int
    word_count: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    """How a strategy parses and chunks a file; nothing is stored."""

    filename: str
    size_bytes: int
    data_processing_strategy: str
    parser_used: str
    chunk_strategy: str
    chunk_size: int
    chunk_overlap: int
    total_chunks: int
    avg_chunk_size: float
    chunks: list[ChunkPreview]


@dataclass(frozen=True)
class ChunkingOverrides:
    """What a preview may try instead of the parser's config; None keeps it."""

    chunk_size: int | None = None
    chunk_overlap: int | None = None
    chunk_strategy: str | None = None


def preview_file(
    *,
    projects: ProjectStore,
    ref: ProjectRef,
    source: BinaryIO,
    filename: str,
    strategy: str | None,
    dataset: str | None,
    overrides: ChunkingOverrides,
    limit: int,
) -> Preview:
    """Parse and chunk an uploaded file as `strategy` (else `dataset`'s, else the first
    dataset's or strategy) would, extractors included; nothing is stored or embedded."""
    config = projects.load(ref.namespace, ref.project)
    chosen = _strategy(config, strategy, dataset)
    name = clean_filename(filename)
    parser = select_parser(chosen, name)
    options = parser.config
    size = options.get("chunk_size", 1000) if overrides.chunk_size is None else overrides.chunk_size
    overlap = (
        options.get("chunk_overlap", 100)
        if overrides.chunk_overlap is None
        else overrides.chunk_overlap
    )
    how = str(overrides.chunk_strategy or options.get("chunk_strategy", "paragraphs"))
    with tempfile.TemporaryDirectory(prefix="lf-preview-") as folder:
        path = Path(folder) / name
        written = copy_upload(source, path, limit=limit)
        document = parse_file(parser, path, filename=name)
    chunks = chunk_document(
        document, chunk_size=int(size), chunk_overlap=int(overlap), chunk_strategy=how
    )
    apply_extractors(chosen, name, chunks)
    return Preview(
        filename=name,
        size_bytes=written,
        data_processing_strategy=chosen.name,
        parser_used=parser.type,
        chunk_strategy=how,
        chunk_size=int(size),
        chunk_overlap=int(overlap),
        total_chunks=len(chunks),
        avg_chunk_size=round(sum(len(c.text) for c in chunks) / len(chunks), 1) if chunks else 0.0,
        chunks=[
            ChunkPreview(i, c.text, len(c.text), len(c.text.split()), dict(c.metadata))
            for i, c in enumerate(chunks)
        ],
    )


def _strategy(
    config: ProjectConfig, strategy: str | None, dataset: str | None
) -> DataProcessingStrategy:
    strategies = config.processing_strategies()
    if strategy is not None:
        found = next((s for s in strategies if s.name == strategy), None)
        if found is None:
            known = ", ".join(s.name for s in strategies)
            raise NotFound(f"Data processing strategy {strategy!r} not found (strategies: {known})")
        return found
    if dataset is not None:
        return config.strategy_of(find_dataset(config, dataset))
    if config.datasets:
        return config.strategy_of(config.datasets[0])
    return strategies[0]


def copy_upload(source: BinaryIO, path: Path, *, limit: int) -> int:
    """An upload written to `path`, at most `limit` bytes and not empty; its size."""
    size = 0
    with path.open("wb") as out:
        while block := source.read(1 << 20):
            size += len(block)
            if size > limit:
                raise PayloadTooLarge(f"File is larger than the {limit >> 20} MiB limit")
            out.write(block)
    if size == 0:
        raise BadRequest("File is empty")
    return size


def _datasets_of(config: ProjectConfig, database: Database) -> list[str]:
    return [d.name for d in config.datasets if d.database == database.name]


def _stored() -> Any:
    return FileRecord.fingerprint.is_not(None) & (FileRecord.chunk_count > 0)


def _parser(strategy: DataProcessingStrategy, filename: str) -> str:
    """The parser the dataset's strategy picks for the file now."""
    try:
        return select_parser(strategy, filename).type
    except ParseFailed:
        return "unknown"
