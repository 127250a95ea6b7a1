"""A database's index moved between projects and servers (export, import) and compacted.

The archive is a zip of three members:

- `manifest.json`: `{"format": "llamafarm-rag-archive", "version": 1, "database", "fingerprint",
  "embedding", "vectors", "dimension", "count", "exported_at"}`: the index record of what built
  the vectors (`rag/index.py`) and how many there are;
- `chunks.jsonl`: one `{"id", "text", "metadata"}` per line;
- `vectors.npy`: a float32 NumPy array of shape (count, dimension), row i the vector of line i.

Import refuses (409) an archive whose fingerprint is not the target database's: its vectors
would be searched with another model's queries. It stores the chunks (upserted by id, so an
import twice stores them once) and records the index; the archive holds chunks, not the files
they came from, so a reindex of the target (which rebuilds from stored files) leaves them out.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from llamafarm.datasets.maintenance import copy_upload
from llamafarm.errors import BadRequest, Conflict, PayloadTooLarge
from llamafarm.formats import iso_time
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.embedders.reuse import CACHE_FILE, VectorCache
from llamafarm.rag.index import fingerprint_of, index_folder, record_write
from llamafarm.rag.service import find_database
from llamafarm.rag.stores import ChromaClients, create_store, index_records

FORMAT, VERSION = "llamafarm-rag-archive", 1
MANIFEST, CHUNKS, VECTORS = "manifest.json", "chunks.jsonl", "vectors.npy"
PAGE = 1000
"""Chunks read from the store, or written to it, at a time."""


@dataclass(frozen=True)
class Imported:
    database: str
    fingerprint: str
    imported_chunks: int
    total_chunks: int


@dataclass(frozen=True)
class Compacted:
    database: str
    bytes_before: int
    bytes_after: int


def export_database(
    *, projects: ProjectStore, ref: ProjectRef, database: str, chroma: ChromaClients
) -> Path:
    """The database's chunks, vectors and index record as an archive in a temporary file
    (the caller removes it)."""
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    project_dir = projects.path(ref.namespace, ref.project)
    record = index_records(chosen, project_dir, chroma).read()
    strategy = chosen.required_embedding()
    store = create_store(chosen, project_dir=project_dir, clients=chroma)
    handle, name = tempfile.mkstemp(prefix="lf-export-", suffix=".zip")
    os.close(handle)
    path = Path(name)
    try:
        with (
            tempfile.TemporaryFile() as raw,
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        ):
            count, dimension = 0, 0
            with zf.open(CHUNKS, "w", force_zip64=True) as lines:
                for page in store.dump(page=PAGE):
                    for chunk_id, text, metadata in zip(
                        page.ids, page.texts, page.metadatas, strict=True
                    ):
                        row = {"id": chunk_id, "text": text, "metadata": metadata}
                        lines.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
                    dimension = page.vectors.shape[1]
                    raw.write(np.ascontiguousarray(page.vectors, dtype="<f4").tobytes())
                    count += len(page.ids)
            raw.seek(0)
            with zf.open(VECTORS, "w", force_zip64=True) as vectors:
                header = {"descr": "<f4", "fortran_order": False, "shape": (count, dimension)}
                np.lib.format.write_array_header_1_0(vectors, header)
                while block := raw.read(1 << 20):
                    vectors.write(block)
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "database": chosen.name,
                "fingerprint": record.fingerprint if record else fingerprint_of(strategy),
                "embedding": record.embedding if record else {},
                "vectors": record.vectors if record else {},
                "dimension": dimension,
                "count": count,
                "exported_at": iso_time(time.time()),
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def import_database(
    *,
    projects: ProjectStore,
    ref: ProjectRef,
    database: str,
    source: BinaryIO,
    limit: int,
    max_unzipped: int,
    chroma: ChromaClients,
) -> Imported:
    """Store an archive's chunks into the database: 400 for what is not a valid archive (or
    over `max_unzipped` bytes unpacked), 409 when its vectors were made by another embedder
    than the database's (or the database needs a reindex)."""
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    expected = fingerprint_of(chosen.required_embedding())
    project_dir = projects.path(ref.namespace, ref.project)
    with _received(source, limit) as path:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadRequest(f"Not a llamafarm RAG archive (a zip): {exc}") from exc
        with zf:
            manifest, ids, texts, metadatas, vectors = _read(zf, max_unzipped)
        if manifest["fingerprint"] != expected:
            built = manifest.get("vectors") or {}
            raise Conflict(
                f"The archive's vectors were made by another embedder (fingerprint "
                f"{manifest['fingerprint']}: {built.get('type')} {built.get('model')!r}) than "
                f"database {chosen.name!r}'s ({expected}); configure the same embedding "
                "strategy, or import into a database that has it"
            )
        store = create_store(chosen, project_dir=project_dir, clients=chroma)
        record_write(chosen, index_records(chosen, project_dir, chroma), store.count)
        for start in range(0, len(ids), PAGE):
            end = start + PAGE
            store.upsert(ids[start:end], texts[start:end], vectors[start:end], metadatas[start:end])
    return Imported(
        database=chosen.name,
        fingerprint=expected,
        imported_chunks=len(ids),
        total_chunks=store.count(),
    )


def compact_database(
    *, projects: ProjectStore, ref: ProjectRef, database: str, chroma: ChromaClients
) -> Compacted:
    """Give back the space of deleted chunks and collections: the store's (Chroma's SQLite
    vacuumed, folders of deleted collections removed), its BM25 indexes' (FTS5 optimize and
    vacuum) and the embedding cache's."""
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    project_dir = projects.path(ref.namespace, ref.project)
    folder = index_folder(project_dir, chosen)
    before = _size(folder)
    create_store(chosen, project_dir=project_dir, clients=chroma).compact()
    cache = VectorCache(folder / CACHE_FILE, max_bytes=1)
    if cache.path.exists():
        try:
            cache.vacuum()
        finally:
            cache.close()
    return Compacted(database=chosen.name, bytes_before=before, bytes_after=_size(folder))


def _read(
    zf: zipfile.ZipFile, max_unzipped: int
) -> tuple[dict[str, Any], list[str], list[str], list[dict[str, Any]], Any]:
    members = {info.filename: info for info in zf.infolist()}
    missing = [m for m in (MANIFEST, CHUNKS, VECTORS) if m not in members]
    if missing:
        raise BadRequest(f"Not a llamafarm RAG archive: {', '.join(missing)} missing")
    if sum(info.file_size for info in members.values()) > max_unzipped:
        raise PayloadTooLarge(
            f"The archive unpacks to more than {max_unzipped >> 20} MiB (LF_PARSE_MAX_UNZIPPED_MB)"
        )
    try:
        manifest = json.loads(zf.read(MANIFEST))
        if not isinstance(manifest, dict):
            raise ValueError("the manifest is not an object")
        if (manifest.get("format"), manifest.get("version")) != (FORMAT, VERSION):
            raise ValueError(f"format {manifest.get('format')!r} {manifest.get('version')!r}")
        if not isinstance(manifest.get("fingerprint"), str):
            raise ValueError("no fingerprint")
        with zf.open(VECTORS) as stream:
            vectors = np.load(stream, allow_pickle=False)
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict[str, Any]] = []
        with zf.open(CHUNKS) as lines:
            for line in _lines(lines):
                row = json.loads(line)
                chunk_id, text, metadata = row["id"], row["text"], row["metadata"]
                if not (isinstance(chunk_id, str) and chunk_id and isinstance(text, str)):
                    raise ValueError(f"chunk {len(ids) + 1}: id and text must be strings")
                if not isinstance(metadata, dict) or not all(
                    isinstance(v, str | int | float | bool) for v in metadata.values()
                ):
                    raise ValueError(f"chunk {len(ids) + 1}: metadata must hold scalars")
                ids.append(chunk_id)
                texts.append(text)
                metadatas.append(metadata)
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise BadRequest(f"Not a valid llamafarm RAG archive: {exc}") from exc
    shape = (len(ids), int(manifest.get("dimension") or 0))
    if vectors.dtype != np.float32 or vectors.ndim != 2 or (ids and vectors.shape != shape):
        raise BadRequest(
            f"Not a valid llamafarm RAG archive: {VECTORS} is {vectors.dtype} "
            f"{vectors.shape}, not float32 {shape}"
        )
    if not ids and len(vectors):
        raise BadRequest(f"Not a valid llamafarm RAG archive: {VECTORS} has rows, no chunks")
    return manifest, ids, texts, metadatas, vectors


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        if line.strip():
            yield line


@contextlib.contextmanager
def _received(source: BinaryIO, limit: int) -> Iterator[Path]:
    """The upload in a temporary file, at most `limit` bytes."""
    with tempfile.TemporaryDirectory(prefix="lf-import-") as folder:
        path = Path(folder) / "archive.zip"
        copy_upload(source, path, limit=limit)
        yield path


def _size(folder: Path) -> int:
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
