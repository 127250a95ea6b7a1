"""Dataset operations: the config lives in llamafarm.yaml, files and their state in the state DB."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from sqlalchemy import and_, delete, select

from llamafarm.config.models import Dataset, ProjectConfig
from llamafarm.datasets.blobs import Blobs, BlobStore, DatabaseBlobs, check_hash
from llamafarm.errors import BadRequest, Conflict, NotFound
from llamafarm.names import check_name
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.stores import ChromaClients, VectorStore, create_store
from llamafarm.state import FileRecord, StateDB


@dataclass(frozen=True)
class FileDetail:
    hash: str
    original_filename: str
    size: int
    timestamp: float
    processed: bool
    chunks: int


@dataclass(frozen=True)
class DatasetDetails:
    total_files: int
    total_size_bytes: int
    file_details: list[FileDetail]


@dataclass(frozen=True)
class DatasetSummary:
    """A dataset of the config with its files' hashes; `details` only when asked for."""

    name: str
    database: str
    data_processing_strategy: str
    files: list[str]
    details: DatasetDetails | None = None


@dataclass(frozen=True)
class StrategyNames:
    """What a dataset may name: the project's data processing strategies and databases."""

    data_processing_strategies: list[str]
    databases: list[str]


@dataclass(frozen=True)
class Upload:
    """A stored file; `skipped` when the dataset had the same content already."""

    filename: str
    hash: str
    processed: bool
    skipped: bool
    size: int


@dataclass(frozen=True)
class FileRemoval:
    file_hash: str
    chunks_removed: int
    removed_from_disk: bool


def blobs(projects: ProjectStore, ref: ProjectRef) -> Blobs:
    """The project's uploaded files: its `raw/` folder, or the state database in shared mode
    (where `raw/` only holds a file while a worker parses it)."""
    folder = projects.path(ref.namespace, ref.project) / "raw"
    if projects.shared is None:
        return BlobStore(folder)
    return DatabaseBlobs(projects.shared, ref.namespace, ref.project, scratch=folder)


def find_dataset(config: ProjectConfig, name: str) -> Dataset:
    check_name(name, kind="dataset name")
    return config.dataset(name)


def list_datasets(
    *, projects: ProjectStore, db: StateDB, ref: ProjectRef, details: bool
) -> list[DatasetSummary]:
    config = projects.load(ref.namespace, ref.project)
    with db.session() as session:
        records = session.scalars(
            select(FileRecord).where(in_project(ref)).order_by(FileRecord.id)
        ).all()
    by_dataset: dict[str, list[FileRecord]] = {}
    for record in records:
        by_dataset.setdefault(record.dataset, []).append(record)
    return [
        _public(d.name, d.database, d.data_processing_strategy, by_dataset.get(d.name, []), details)
        for d in config.datasets
    ]


def strategies(*, projects: ProjectStore, ref: ProjectRef) -> StrategyNames:
    config = projects.load(ref.namespace, ref.project)
    return StrategyNames(
        data_processing_strategies=[s.name for s in config.processing_strategies()],
        databases=[d.name for d in config.rag.databases] if config.rag else [],
    )


def create_dataset(
    *, projects: ProjectStore, ref: ProjectRef, name: str, database: str, strategy: str
) -> DatasetSummary:
    check_name(name, kind="dataset name")
    known = strategies(projects=projects, ref=ref)
    if strategy not in known.data_processing_strategies:
        listed = ", ".join(known.data_processing_strategies) or "none configured"
        raise BadRequest(f"Unknown data_processing_strategy {strategy!r} (available: {listed})")
    if database not in known.databases:
        listed = ", ".join(known.databases) or "none configured"
        raise BadRequest(f"Unknown database {database!r} (available: {listed})")

    def add(document: dict[str, Any]) -> None:  # checked under the project lock
        entries = document.setdefault("datasets", [])
        if any(entry.get("name") == name for entry in entries):
            raise Conflict(f"Dataset {name!r} already exists")
        entries.append({"name": name, "database": database, "data_processing_strategy": strategy})

    projects.edit(ref.namespace, ref.project, add)
    return _public(name, database, strategy, [], details=False)


def delete_dataset(
    *, projects: ProjectStore, db: StateDB, ref: ProjectRef, name: str, chroma: ChromaClients
) -> DatasetSummary:
    """Remove the dataset's chunks, then its config entry, then its file records and bytes."""
    config = projects.load(ref.namespace, ref.project)
    dataset = find_dataset(config, name)
    dataset_store(projects, ref, name, chroma).delete({"dataset": name})

    def remove(document: dict[str, Any]) -> None:
        document["datasets"] = [d for d in document.get("datasets", []) if d.get("name") != name]

    # The entry and the records go under one hold of the lock that uploads check the dataset
    # under: an upload either lands before (and goes with the rest) or finds no dataset.
    with projects.lock(ref.namespace, ref.project):
        projects.edit(ref.namespace, ref.project, remove, locked=True)
        with db.session() as session:
            records = list(session.scalars(file_query(ref, name)).all())
            for record in records:
                session.delete(record)
        for file_hash in {record.file_hash for record in records}:
            _drop_if_unreferenced(projects, db, ref, file_hash)
    return _public(name, dataset.database, dataset.data_processing_strategy, records, False)


def wants_processing(
    *, projects: ProjectStore, ref: ProjectRef, dataset: str, asked: bool | None
) -> bool:
    """Whether an upload is queued for processing: as the upload asks, else as the dataset's
    `auto_process` says (absent: no)."""
    if asked is not None:
        return asked
    return bool(find_dataset(projects.load(ref.namespace, ref.project), dataset).auto_process)


def upload_file(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    dataset: str,
    source: BinaryIO,
    filename: str,
    limit: int,
) -> Upload:
    """Store the bytes once per content; the same content again is reported as skipped."""
    filename = clean_filename(filename)
    # Under the project lock: the dataset cannot be deleted between this check and the
    # record (which would hand the file to a later dataset of the same name), a concurrent
    # removal of the same content cannot unlink the bytes between storing and recording
    # them, and the same content uploaded twice at once makes one record, not a unique-key
    # error.
    with projects.lock(ref.namespace, ref.project):
        find_dataset(projects.load(ref.namespace, ref.project), dataset)
        file_hash, size = blobs(projects, ref).put(source, limit=limit)
        try:
            with db.session() as session:
                existing = session.scalars(
                    file_query(ref, dataset).where(FileRecord.file_hash == file_hash)
                ).one_or_none()
                if existing is None:
                    session.add(
                        FileRecord(
                            namespace=ref.namespace,
                            project=ref.project,
                            dataset=dataset,
                            file_hash=file_hash,
                            filename=filename,
                            size=size,
                            uploaded_at=time.time(),
                        )
                    )
        except BaseException:
            _drop_if_unreferenced(projects, db, ref, file_hash)  # no bytes without a record
            raise
    return Upload(
        filename=filename,
        hash=file_hash,
        processed=existing is not None and existing.fingerprint is not None,
        skipped=existing is not None,
        size=size,
    )


def remove_file(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    dataset: str,
    file_hash: str,
    remove_from_disk: bool,
    chroma: ChromaClients,
) -> FileRemoval:
    check_hash(file_hash)
    store = dataset_store(projects, ref, dataset, chroma)
    record = find_file(db, ref, dataset, file_hash)
    removed = store.delete({"dataset": dataset, "file_hash": file_hash})
    with db.session() as session:
        session.execute(delete(FileRecord).where(FileRecord.id == record.id))
    deleted = remove_from_disk and _drop_unreferenced(projects, db, ref, file_hash)
    return FileRemoval(file_hash=file_hash, chunks_removed=removed, removed_from_disk=deleted)


def clean_filename(filename: str) -> str:
    """The base name a client gave, without directories or control characters."""
    base = PureWindowsPath(PurePosixPath(filename or "").name).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    return base[:255] or "upload"


def in_project(ref: ProjectRef) -> Any:
    """The WHERE clause of a project's file records."""
    return and_(FileRecord.namespace == ref.namespace, FileRecord.project == ref.project)


def file_query(ref: ProjectRef, dataset: str) -> Any:
    """SELECT of a dataset's file records."""
    return select(FileRecord).where(in_project(ref), FileRecord.dataset == dataset)


def dataset_store(
    projects: ProjectStore, ref: ProjectRef, dataset: str, chroma: ChromaClients
) -> VectorStore:
    """The vector store a dataset's chunks go to, its clients from the caller's `chroma`."""
    config = projects.load(ref.namespace, ref.project)
    database = config.database_of(find_dataset(config, dataset))
    project_dir = projects.path(ref.namespace, ref.project)
    return create_store(database, project_dir=project_dir, clients=chroma)


def _drop_unreferenced(
    projects: ProjectStore, db: StateDB, ref: ProjectRef, file_hash: str
) -> bool:
    with projects.lock(ref.namespace, ref.project):
        return _drop_if_unreferenced(projects, db, ref, file_hash)


def _drop_if_unreferenced(
    projects: ProjectStore, db: StateDB, ref: ProjectRef, file_hash: str
) -> bool:
    """Remove the bytes no dataset of the project names any more; the caller holds its lock."""
    with db.session() as session:
        still_used = session.scalars(
            select(FileRecord.id).where(in_project(ref), FileRecord.file_hash == file_hash)
        ).first()
    return still_used is None and blobs(projects, ref).delete(file_hash)


def _public(
    name: str, database: str, strategy: str, records: list[FileRecord], details: bool
) -> DatasetSummary:
    return DatasetSummary(
        name=name,
        database=database,
        data_processing_strategy=strategy,
        files=[r.file_hash for r in records],
        details=_details(records) if details else None,
    )


def _details(records: list[FileRecord]) -> DatasetDetails:
    return DatasetDetails(
        total_files=len(records),
        total_size_bytes=sum(r.size for r in records),
        file_details=[
            FileDetail(
                hash=r.file_hash,
                original_filename=r.filename,
                size=r.size,
                timestamp=r.uploaded_at,
                processed=r.fingerprint is not None,
                chunks=r.chunk_count,
            )
            for r in records
        ],
    )


def find_file(db: StateDB, ref: ProjectRef, dataset: str, file_hash: str) -> FileRecord:
    """The dataset's record of a file, by its (checked) hash; 404 when it has none."""
    with db.session() as session:
        record = session.scalars(
            file_query(ref, dataset).where(FileRecord.file_hash == file_hash)
        ).one_or_none()
    if record is None:
        raise NotFound(f"File {file_hash} is not in dataset {dataset!r}")
    found: FileRecord = record
    return found
