"""ChromaStore: an embedded ChromaDB `PersistentClient` in the project's folder.

Chroma's embedded client keeps each collection's index in the memory of the process that opened
it and does not notice writes made by another process (measured: a reader kept answering from
its stale index after a second process added 700 vectors). The API server and the ingestion
worker both use the store, so every operation here runs under a cross-process file lock, and
every write bumps a generation file; a process that sees a generation other than the one it
loaded reopens its client first. This is the one piece of hand-written coordination around
Chroma, and it is why the lock and generation live here rather than in callers.

With `host` (and `port`) in its config the store is a collection of a Chroma server instead,
through `chromadb.HttpClient`: the server is the one copy every process sees, so no generation
is needed; the BM25 index stays a file in the project's folder, under the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import shutil
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
from chromadb.errors import InvalidArgumentError

from llamafarm.documents import MetadataValue
from llamafarm.errors import BadRequest, ConfigInvalid, Conflict, Unavailable
from llamafarm.rag.filters import Filter, to_chroma
from llamafarm.rag.stores.base import DistanceMetric, Hit, Where
from llamafarm.rag.stores.lexical import LexicalIndex

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
RESCORE_CANDIDATES = 100
"""Nearest chunks re-scored when a query asks for a metric other than the collection's."""

_clients: dict[Path, tuple[ClientAPI, str]] = {}
_collections: dict[tuple[Path, str, str], Collection] = {}
"""Open collections of the cached clients (opening one costs more than a query)."""
_process_lock = threading.RLock()


CONFIG_KEYS = frozenset({"collection_name", "distance_function", "distance_metric", "host", "port"})
LLAMAFARM_KEYS = frozenset(
    {"embedding_dimension", "enable_deduplication", "embedding_function", "persist_directory"}
)
"""LlamaFarm's keys accepted and not acted on (warned about at validation)."""


class ChromaStore:
    def __init__(
        self,
        *,
        path: Path,
        collection_name: str,
        distance_function: str = "cosine",
        server: tuple[str, int] | None = None,
    ):
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
        self.server = server
        """A Chroma server's host and port; None: the embedded client in `path`."""

    @classmethod
    def from_config(cls, *, path: Path, database: str, config: Mapping[str, Any]) -> ChromaStore:
        unknown = set(config) - CONFIG_KEYS - LLAMAFARM_KEYS
        if unknown:
            raise ConfigInvalid(f"ChromaStore config: unknown keys {sorted(unknown)}")
        default_name = database if len(database) >= 3 else f"{database}_chunks"
        distance = config.get("distance_function") or config.get("distance_metric") or "cosine"
        return cls(
            path=path,
            collection_name=str(config.get("collection_name") or default_name),
            distance_function=str(distance),
            server=_server(config),
        )

    def replace(
        self,
        where: Where,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        with self._collection(write=True) as collection:
            lexical = self._lexical(collection)
            _upsert(collection, ids, texts, vectors, metadatas)
            lexical.upsert(ids, texts, metadatas)
            # The lexical side by metadata first: a retry after a failure here redoes it all.
            lexical.delete_where(where, keep=ids)
            stale = sorted(set(collection.get(where=_where(where), include=[])["ids"]) - set(ids))
            if stale:
                collection.delete(ids=stale)

    def delete(self, where: Where) -> int:
        with self._collection(write=True) as collection:
            # The lexical side first, by metadata: if the vectors' delete then fails, a retry
            # still finds them; the other order could leave lexical rows no retry would see.
            self._lexical(collection).delete_where(where)
            ids = collection.get(where=_where(where), include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
            return len(ids)

    def count(self, where: Where | None = None) -> int:
        with self._collection(write=False) as collection:
            if not where:
                return collection.count()
            return len(collection.get(where=_where(where), include=[])["ids"])

    def search(
        self,
        vector: Sequence[float],
        *,
        top_k: int,
        where: Filter | None = None,
        metric: DistanceMetric | None = None,
    ) -> list[Hit]:
        space = self.space if metric is None else _space(metric)
        wanted = top_k if space == self.space else max(top_k, RESCORE_CANDIDATES)
        include: list[Any] = ["documents", "metadatas", "distances"]
        if space != self.space:
            include.append("embeddings")
        query = np.asarray([vector], dtype=np.float32)
        with self._collection(write=False) as collection:
            try:
                found = collection.query(
                    query_embeddings=query,
                    n_results=wanted,
                    where=to_chroma(where) if where is not None else None,
                    include=include,
                )
            except InvalidArgumentError as exc:
                if "dimension" not in str(exc):
                    raise BadRequest(f"The vector store refused the query: {exc}") from exc
                raise Conflict(
                    f"Collection {self.collection_name!r} holds vectors of another size than "
                    f"this query's ({len(vector)}): the embedder changed since its files were "
                    "processed; process the datasets again"
                ) from exc
        ids, texts = found["ids"][0], (found["documents"] or [[]])[0]
        metadatas = (found["metadatas"] or [[]])[0]
        if space == self.space:
            scores = [_similarity(space, d) for d in (found["distances"] or [[]])[0]]
        else:
            # Shaped (hits, dimension) even with no hits: an empty list is shape (0,), which
            # the distance arithmetic cannot broadcast against the query (a 500 on an empty
            # collection, found by tests/api/test_fuzz.py).
            stored = np.asarray((found["embeddings"] or [[]])[0], dtype=np.float32).reshape(
                len(ids), query.shape[1]
            )
            scores = [_similarity(space, d) for d in _distances(space, query[0], stored)]
        hits = [
            Hit(id=i, text=t or "", metadata=_scalars(m), score=s)
            for i, t, m, s in zip(ids, texts, metadatas, scores, strict=True)
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.id))
        return hits[:top_k]

    def keyword_search(self, text: str, *, top_k: int, where: Filter | None = None) -> list[Hit]:
        with self._collection(write=False) as collection:
            found = self._lexical(collection).search(text, top_k=top_k, where=where)
        return [Hit(id=f.id, text=f.text, metadata=f.metadata, score=f.score) for f in found]

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        with self._collection(write=False) as collection:
            lexical = self._lexical(collection)
            return lexical.term_stats(terms), lexical.count()

    def drop(self) -> None:
        if self.server is not None:
            with self._collection(write=True) as collection:
                collection._client.delete_collection(self.collection_name)
        if not self.path.exists():
            return
        with _locked(self.path):
            _forget(self.path)
            # Everything but the lock file, which other processes may hold open right now.
            for entry in self.path.iterdir():
                if entry.name == _LOCK:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            _bump(self.path)

    def _lexical(self, collection: Collection) -> LexicalIndex:
        """The collection's BM25 index; a store made before there was one gets it filled once."""
        lexical = LexicalIndex(self.path / f"{self.collection_name}.lexical.sqlite3")
        if not lexical.exists and collection.count():
            # Filled under another name and renamed when complete: an interrupted fill
            # leaves no partial index that would pass for a whole one.
            partial = LexicalIndex(lexical.path.with_name(lexical.path.name + ".partial"))
            partial.drop()
            step = collection._client.get_max_batch_size()
            offset = 0
            while True:
                page = collection.get(include=["documents", "metadatas"], limit=step, offset=offset)
                if not page["ids"]:
                    break
                texts = [t or "" for t in page["documents"] or []]
                partial.upsert(page["ids"], texts, [_scalars(m) for m in page["metadatas"] or []])
                offset += len(page["ids"])
            partial.path.replace(lexical.path)
        return lexical

    def _open(self, client: ClientAPI) -> Collection:
        collection = client.get_or_create_collection(
            self.collection_name,
            embedding_function=None,
            configuration=cast(Any, {"hnsw": {"space": self.space}}),
        )
        built = collection.configuration_json.get("hnsw", {}).get("space", self.space)
        if built == self.space:
            return collection
        # Chroma keeps the space a collection was made with and ignores the new one.
        if collection.count():
            raise Conflict(
                f"Collection {self.collection_name!r} was built with distance {built!r} "
                f"and holds chunks; it cannot switch to {self.space!r}. Delete the "
                "database's chunks (or the database) first"
            )
        client.delete_collection(self.collection_name)
        for stale in [k for k in _collections if k[:2] == (self.path, self.collection_name)]:
            del _collections[stale]
        return client.create_collection(
            self.collection_name,
            embedding_function=None,
            configuration=cast(Any, {"hnsw": {"space": self.space}}),
        )

    @contextlib.contextmanager
    def _collection(self, *, write: bool) -> Iterator[Collection]:
        self.path.mkdir(parents=True, exist_ok=True)
        if self.server is not None:
            with _locked(self.path):
                yield self._open(_http_client(*self.server))
            return
        with _locked(self.path):
            client = _client(self.path)
            key = (self.path, self.collection_name, self.space)
            if key not in _collections:
                _collections[key] = self._open(client)
            collection = _collections[key]
            yield collection
            if write:
                _bump(self.path)


def _server(config: Mapping[str, Any]) -> tuple[str, int] | None:
    host = config.get("host")
    if host in (None, ""):
        return None
    port = config.get("port", 8000)
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigInvalid("ChromaStore config: host must be a name and port a TCP port")
    return host, port


def _http_client(host: str, port: int) -> ClientAPI:
    """A client of the Chroma server (chromadb keeps one system per server for the process)."""
    try:
        return chromadb.HttpClient(
            host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False)
        )
    except Exception as exc:  # chromadb raises bare ValueError/ConnectionError and httpx's
        raise Unavailable(f"Chroma server at {host}:{port} cannot be reached: {exc}") from exc


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


def _scalars(metadata: Mapping[str, Any] | None) -> dict[str, MetadataValue]:
    """A chunk's metadata as stored: this project writes scalars only."""
    return {k: v for k, v in (metadata or {}).items() if isinstance(v, str | int | float | bool)}


def _space(metric: str) -> str:
    if metric not in DISTANCES:
        raise BadRequest(f"Unknown distance_metric {metric!r} (valid: {', '.join(DISTANCES)})")
    return DISTANCES[metric]


def _distances(space: str, query: Any, stored: Any) -> Any:
    """Chroma's distance of each stored vector to the query, in another space than its index."""
    if space == "l2":
        return ((stored - query) ** 2).sum(axis=1)
    if space == "ip":
        return 1.0 - stored @ query
    norms = np.linalg.norm(stored, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    return 1.0 - (stored @ query) / np.maximum(norms, 1e-12)


def _similarity(space: str, distance: float) -> float:
    """A distance as a similarity in [0, 1]: cosine and inner product clipped, l2 as 1/(1+d)."""
    if space == "l2":
        return 1.0 / (1.0 + max(float(distance), 0.0))
    return min(max(1.0 - float(distance), 0.0), 1.0)


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


def _forget(path: Path) -> None:
    """Close this process's client of `path` (Chroma caches one system per path)."""
    if path in _clients:
        _close_all()


def _close_all(*, collect: bool = False) -> None:
    """Close every client of this process; the next operation of each store reopens its own.

    Chroma's `clear_system_cache` only forgets its systems: each keeps its SQLite files open
    (measured: 7 descriptors per store) until it is stopped, so stop them first. One of those
    is let go only when a reference cycle is collected: `collect` does that now, for callers
    whose files are deleted (their disk space comes back only once no descriptor is left).
    """
    systems = list(SharedSystemClient._identifier_to_system.values())
    _clients.clear()
    _collections.clear()
    SharedSystemClient.clear_system_cache()
    for system in systems:
        system.stop()
    if collect:
        gc.collect()


def release(root: Path) -> None:
    """Close this process's clients of the stores under `root` (a deleted project or store)."""
    with _process_lock:
        if any(path == root or root in path.parents for path in _clients):
            _close_all()
        gc.collect()  # a `drop` just before may have left its cycle too


def release_missing() -> None:
    """Close this process's clients when a store's folder is gone (deleted by another process)."""
    with _process_lock:
        if any(not path.is_dir() for path in _clients):
            _close_all(collect=True)


def _client(path: Path) -> ClientAPI:
    """This process's client for `path`, reopened when another process has written since.

    Called under `_locked`, like `_bump`: the process lock guards `_clients`.
    """
    current = _generation(path)
    if not current:
        # A store's first open names a generation, so a folder deleted and made again
        # (no generation) never matches a client still open on the old files.
        _bump(path)
        current = _generation(path)
    cached = _clients.get(path)
    if cached is not None and cached[1] == current:
        return cached[0]
    if cached is not None:
        # Chroma caches one system per path for the life of the process; clearing the
        # cache is its public way to make the next client read the files again.
        _forget(path)
    client = chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )
    _clients[path] = (client, current)
    return client
