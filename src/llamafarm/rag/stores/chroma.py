"""ChromaStore: an embedded ChromaDB `PersistentClient` in the project's folder.

Chroma's embedded client keeps each collection's index in the memory of the process that opened
it and does not notice writes made by another process (measured: a reader kept answering from
its stale index after a second process added 700 vectors). The API server and the ingestion
worker both use the store, so every operation here runs under a cross-process file lock, and
every write bumps a generation file; a process that sees a generation other than the one it
loaded reopens its client first. This is the one piece of hand-written coordination around
Chroma, and it is why the lock and generation live here rather than in callers.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.documents import MetadataValue
from llamafarm.rag.stores.base import Where

DISTANCES = {
    "cosine": "cosine",
    "l2": "l2",
    "euclidean": "l2",
    "ip": "ip",
    "inner_product": "ip",
    "dot": "ip",
}
_GENERATION = ".lf-generation"
_LOCK = ".lf-lock"

_clients: dict[Path, tuple[ClientAPI, str]] = {}
_process_lock = threading.RLock()


class ChromaStore:
    def __init__(self, *, path: Path, collection_name: str, distance_function: str = "cosine"):
        if distance_function not in DISTANCES:
            known = ", ".join(DISTANCES)
            raise ConfigInvalid(f"distance_function {distance_function!r} is not one of {known}")
        if not _valid_collection(collection_name):
            raise ConfigInvalid(
                f"collection_name {collection_name!r}: Chroma needs 3-512 letters, digits, "
                "'.', '_' or '-', starting and ending with a letter or digit"
            )
        self.path = path
        self.collection_name = collection_name
        self.space = DISTANCES[distance_function]

    @classmethod
    def from_config(cls, *, path: Path, database: str, config: Mapping[str, Any]) -> ChromaStore:
        unknown = set(config) - {"collection_name", "distance_function"}
        if unknown:
            raise ConfigInvalid(f"ChromaStore config: unknown keys {sorted(unknown)}")
        default_name = database if len(database) >= 3 else f"{database}_chunks"
        return cls(
            path=path,
            collection_name=str(config.get("collection_name") or default_name),
            distance_function=str(config.get("distance_function", "cosine")),
        )

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        if ids:
            with self._collection(write=True) as collection:
                _upsert(collection, ids, texts, vectors, metadatas)

    def replace(
        self,
        where: Where,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        with self._collection(write=True) as collection:
            _upsert(collection, ids, texts, vectors, metadatas)
            stale = set(collection.get(where=_where(where), include=[])["ids"]) - set(ids)
            if stale:
                collection.delete(ids=sorted(stale))

    def delete(self, where: Where) -> int:
        with self._collection(write=True) as collection:
            ids = collection.get(where=_where(where), include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
            return len(ids)

    def count(self, where: Where | None = None) -> int:
        with self._collection(write=False) as collection:
            if not where:
                return collection.count()
            return len(collection.get(where=_where(where), include=[])["ids"])

    @contextlib.contextmanager
    def _collection(self, *, write: bool) -> Iterator[Collection]:
        self.path.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            client = _client(self.path)
            yield client.get_or_create_collection(
                self.collection_name,
                embedding_function=None,
                configuration=cast(Any, {"hnsw": {"space": self.space}}),
            )
            if write:
                _bump(self.path)


def _upsert(
    collection: Collection,
    ids: Sequence[str],
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    metadatas: Sequence[Mapping[str, MetadataValue]],
) -> None:
    step = collection._client.get_max_batch_size()
    for start in range(0, len(ids), step):
        end = start + step
        collection.upsert(
            ids=list(ids[start:end]),
            documents=list(texts[start:end]),
            embeddings=np.asarray(vectors[start:end], dtype=np.float32),
            metadatas=[dict(m) for m in metadatas[start:end]],
        )


def _valid_collection(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return (
        3 <= len(name) <= 512 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()
    )


def _where(where: Where) -> Any:
    clauses = [{key: value} for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The process lock first: reopening a client clears Chroma's process-wide cache, which
    # must not happen under another thread's operation on any store.
    with _process_lock, (path / _LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generation(path: Path) -> str:
    try:
        return (path / _GENERATION).read_text()
    except FileNotFoundError:
        return ""


def _bump(path: Path) -> None:
    generation = uuid.uuid4().hex
    (path / _GENERATION).write_text(generation)
    if path in _clients:
        _clients[path] = (_clients[path][0], generation)


def _client(path: Path) -> ClientAPI:
    """This process's client for `path`, reopened when another process has written since.

    Called under `_locked`, like `_bump`: the process lock guards `_clients`.
    """
    current = _generation(path)
    cached = _clients.get(path)
    if cached is not None and cached[1] == current:
        return cached[0]
    if cached is not None:
        # Chroma caches one system per path for the life of the process; clearing the
        # cache is its public way to make the next client read the files again.
        _clients.clear()
        SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )
    _clients[path] = (client, current)
    return client
