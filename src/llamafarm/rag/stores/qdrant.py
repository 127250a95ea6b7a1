"""QdrantStore: Qdrant in the project's folder (local mode), or a Qdrant server by URL or host.

Local mode keeps the points in memory and locks its folder for one client at a time, and the
API server and the worker both use the store: every operation opens its client under the
store's cross-process file lock and closes it after, so a write of one process is what the
next reader loads. A server client is made per operation as well (it is only an HTTP client).
The BM25 side is the same `LexicalIndex` file beside the points as ChromaStore's; for a store on
a server whose owner keeps BM25 in PostgreSQL (shared mode), the same `PostgresLexicalIndex`
rows. On a server the collection is named after the namespace and project as well
(`server_collection`), so projects sharing a server stay apart.
Qdrant wants UUID point ids: each chunk id maps to a UUID5, the id itself kept in the payload.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from llamafarm.documents import MetadataValue
from llamafarm.errors import ConfigInvalid, Unavailable
from llamafarm.rag.filters import All, AnyOf, Condition, Filter, matches
from llamafarm.rag.index import RECORD_LOCK
from llamafarm.rag.stores.base import DistanceMetric, Hit, Stored, Where, server_collection
from llamafarm.rag.stores.bm25 import Lexical
from llamafarm.rag.stores.lexical import LexicalIndex
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.rag.stores.metrics import (
    RESCORE_CANDIDATES,
    distances,
    similarity,
    size_conflict,
    space_of,
)

DISTANCES = {
    "cosine": models.Distance.COSINE,
    "l2": models.Distance.EUCLID,
    "euclidean": models.Distance.EUCLID,
    "euclid": models.Distance.EUCLID,
    "ip": models.Distance.DOT,
    "dot": models.Distance.DOT,
    "inner_product": models.Distance.DOT,
}
_SPACES = {
    models.Distance.COSINE: "cosine",
    models.Distance.EUCLID: "l2",
    models.Distance.DOT: "ip",
}
_ID, _TEXT = "_lf_id", "_lf_text"
_KEYS = {"path", "url", "host", "port", "api_key", "collection_name", "distance", "on_disk"}
_KEYS |= {"vector_size", "https", "timeout"}
_LOCK = ".lf-lock"
_NAMESPACE = uuid.UUID("6f1c1c55-7b8e-4a5e-9a52-2f1d0c6b7a11")
_PAGE = 256
_process_lock = threading.RLock()

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from llamafarm.rag.stores.chroma_clients import ChromaClients


class QdrantStore:
    def __init__(
        self,
        *,
        path: Path,
        collection_name: str,
        distance: str = "cosine",
        server: Mapping[str, Any] | None = None,
        on_disk: bool = False,
        lexical: Engine | None = None,
    ) -> None:
        if distance.lower() not in DISTANCES:
            raise ConfigInvalid(f"distance {distance!r} is not one of {', '.join(DISTANCES)}")
        self.path = path
        self.collection_name = collection_name
        self.distance = DISTANCES[distance.lower()]
        self.space = _SPACES[self.distance]
        self.server = dict(server) if server else None
        self.on_disk = on_disk
        self.lexical = lexical
        """The state database that keeps the BM25 index of a store on a server (shared mode);
        None: a file beside the points."""

    @classmethod
    def from_config(
        cls,
        *,
        path: Path,
        database: str,
        config: Mapping[str, Any],
        clients: ChromaClients | None = None,
        scope: Sequence[str] = (),
    ) -> QdrantStore:
        """Of `clients` (the owner's) only its PostgreSQL engine counts, for the BM25 index of a
        store on a server: a Qdrant client is made per operation. `scope`, the namespace and
        project, names the collection on a server."""
        known = _KEYS | {"grpc_port", "prefer_grpc"}
        unknown = set(config) - known
        if unknown:
            raise ConfigInvalid(f"QdrantStore config: unknown keys {sorted(unknown)}")
        server = {k: config.get(k) for k in ("url", "host", "port", "api_key", "https", "timeout")}
        server = {k: v for k, v in server.items() if v is not None}
        for key, kind in (("url", str), ("host", str), ("port", int), ("api_key", str)):
            if key in server and (not isinstance(server[key], kind) or server[key] is True):
                raise ConfigInvalid(f"QdrantStore config: {key} must be a {kind.__name__}")
        if "port" in server and not ({"url", "host"} & set(server)):
            server.pop("port")
        if config.get("path"):
            raise ConfigInvalid(
                "QdrantStore config: path: the store lives in the project's folder; "
                "give url or host for a server"
            )
        on_server = bool({"url", "host"} & set(server))
        name = str(config.get("collection_name") or database)
        return cls(
            path=path,
            collection_name=server_collection(scope, name) if on_server and scope else name,
            distance=str(config.get("distance", "cosine")),
            server=server if on_server else None,
            on_disk=bool(config.get("on_disk", False)),
            lexical=clients.lexical if on_server and clients is not None else None,
        )

    def replace(
        self,
        where: Where,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        self.upsert(ids, texts, vectors, metadatas)
        self.delete(where, keep=ids)

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        with self._client(write=True) as client:
            lexical = self._lexical()
            if ids:
                self._ensure(client, len(vectors[0]))
                points = [
                    models.PointStruct(
                        id=_point(i), vector=list(v), payload={**m, _ID: i, _TEXT: t}
                    )
                    for i, t, v, m in zip(ids, texts, vectors, metadatas, strict=True)
                ]
                for start in range(0, len(points), _PAGE):
                    client.upsert(self.collection_name, points=points[start : start + _PAGE])
            lexical.upsert(ids, texts, metadatas)

    def delete(self, where: Where, *, keep: Sequence[str] = ()) -> int:
        with self._client(write=True) as client:
            self._lexical().delete_where(where, keep=keep)
            if not client.collection_exists(self.collection_name):
                return 0
            kept = {_point(i) for i in keep}
            found = [p for p in self._ids(client, where) if p not in kept]
            if found:
                client.delete(self.collection_name, models.PointIdsList(points=found))
            return len(found)

    def remove(self, ids: Sequence[str]) -> None:
        with self._client(write=True) as client:
            self._lexical().delete(ids)
            if ids and client.collection_exists(self.collection_name):
                points: list[models.ExtendedPointId] = [_point(i) for i in ids]
                for start in range(0, len(points), _PAGE):
                    chosen = models.PointIdsList(points=points[start : start + _PAGE])
                    client.delete(self.collection_name, chosen)

    def count(self, where: Where | None = None) -> int:
        with self._client(write=False) as client:
            if not client.collection_exists(self.collection_name):
                return 0
            chosen = _equals(where) if where else None
            return client.count(self.collection_name, count_filter=chosen, exact=True).count

    def search(
        self,
        vector: Sequence[float],
        *,
        top_k: int,
        where: Filter | None = None,
        metric: DistanceMetric | None = None,
        texts: bool = True,
    ) -> list[Hit]:
        # Texts come whatever `texts` says: the payload holds them, and the exact filter below
        # reads it anyway.
        space = self.space if metric is None else space_of(metric)
        wanted = top_k if space == self.space else max(top_k, RESCORE_CANDIDATES)
        with self._client(write=False) as client:
            if not client.collection_exists(self.collection_name):
                return []
            size = self._size(client)
            if size is not None and size != len(vector):
                raise size_conflict(self.collection_name, len(vector))
            found = client.query_points(
                self.collection_name,
                query=list(vector),
                limit=wanted,
                query_filter=to_qdrant(where) if where is not None else None,
                with_payload=True,
                with_vectors=space != self.space,
            ).points
        # Qdrant's conditions are close to ours but not the same on types (True vs 1): the
        # exact test runs here, on what it returned.
        kept = [p for p in found if where is None or matches(where, _metadata(p.payload))]
        if space == self.space:
            scores = [self._similarity(float(p.score)) for p in kept]
        else:
            stored = np.asarray([p.vector for p in kept], dtype=np.float32)
            query = np.asarray(vector, dtype=np.float32)
            stored = stored.reshape(len(kept), len(query))
            scores = [similarity(space, d) for d in distances(space, query, stored)]
        hits = [
            Hit(
                id=str(p.payload[_ID]),
                text=str(p.payload.get(_TEXT, "")),
                metadata=_metadata(p.payload),
                score=s,
            )
            for p, s in zip(kept, scores, strict=True)
            if p.payload
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.id))
        return hits[:top_k]

    def fetch(self, ids: Sequence[str]) -> dict[str, Hit]:
        if not ids:
            return {}
        with self._client(write=False) as client:
            if not client.collection_exists(self.collection_name):
                return {}
            found = client.retrieve(
                self.collection_name, ids=[_point(i) for i in ids], with_payload=True
            )
        return {
            str(p.payload[_ID]): Hit(
                id=str(p.payload[_ID]),
                text=str(p.payload.get(_TEXT, "")),
                metadata=_metadata(p.payload),
                score=0.0,
            )
            for p in found
            if p.payload
        }

    def keyword_search(self, text: str, *, top_k: int, where: Filter | None = None) -> list[Hit]:
        with self._locked():
            found = self._lexical().search(text, top_k=top_k, where=where)
        return [Hit(id=f.id, text=f.text, metadata=f.metadata, score=f.score) for f in found]

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        with self._locked():
            lexical = self._lexical()
            return lexical.term_stats(terms), lexical.count()

    def drop(self) -> None:
        if self.server is not None:
            with self._client(write=True) as client:
                client.delete_collection(self.collection_name)
        if not self.path.exists():
            return
        with self._locked():
            for entry in self.path.iterdir():
                if entry.name in (_LOCK, RECORD_LOCK):
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def dump(self, *, page: int = 1000) -> Iterator[Stored]:
        offset: Any = None
        while True:
            with self._client(write=False) as client:
                if not client.collection_exists(self.collection_name):
                    return
                points, offset = client.scroll(
                    self.collection_name,
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
            kept = [p for p in points if p.payload]
            if kept:
                yield Stored(
                    ids=[str(p.payload[_ID]) for p in kept if p.payload],
                    texts=[str(p.payload.get(_TEXT, "")) for p in kept if p.payload],
                    vectors=np.asarray([p.vector for p in kept], dtype=np.float32),
                    metadatas=[dict(_metadata(p.payload)) for p in kept],
                )
            if offset is None:
                return

    def compact(self) -> None:
        lexical = self._lexical()
        if isinstance(lexical, LexicalIndex):  # PostgreSQL's rows need no compaction
            with self._locked():
                lexical.compact()

    def discard(self) -> None:
        with self._client(write=True) as client:
            if client.collection_exists(self.collection_name):
                client.delete_collection(self.collection_name)
            self._lexical().drop()

    def _similarity(self, score: float) -> float:
        """Qdrant's score as a similarity in [0, 1], as ChromaStore reports it."""
        if self.distance == models.Distance.EUCLID:
            return 1.0 / (1.0 + score * score)  # Chroma's l2 is the squared distance
        return min(max(score, 0.0), 1.0)

    def _lexical(self) -> Lexical:
        if self.lexical is not None:
            return PostgresLexicalIndex(self.lexical, store=self.collection_name)
        return LexicalIndex(self.path / f"{self.collection_name}.lexical.sqlite3")

    def _ensure(self, client: QdrantClient, size: int) -> None:
        if client.collection_exists(self.collection_name):
            return
        params = models.VectorParams(size=size, distance=self.distance, on_disk=self.on_disk)
        client.create_collection(self.collection_name, vectors_config=params)

    def _size(self, client: QdrantClient) -> int | None:
        vectors = client.get_collection(self.collection_name).config.params.vectors
        return vectors.size if isinstance(vectors, models.VectorParams) else None

    def _ids(self, client: QdrantClient, where: Where) -> list[Any]:
        found: list[Any] = []
        offset: Any = None
        while True:
            points, offset = client.scroll(
                self.collection_name,
                scroll_filter=_equals(where),
                limit=_PAGE,
                offset=offset,
                with_payload=[_ID],
            )
            found.extend(p.id for p in points)
            if offset is None:
                return found

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with _process_lock, (self.path / _LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _client(self, *, write: bool) -> Iterator[QdrantClient]:
        del write  # every operation is locked: local mode allows one client per folder
        with self._locked():
            try:
                if self.server is None:
                    client = QdrantClient(path=str(self.path / "qdrant"))
                else:
                    # No version probe: it runs on a thread and fails there when the server is down.
                    client = QdrantClient(**self.server, check_compatibility=False)
            except (OSError, RuntimeError, ValueError) as exc:
                raise Unavailable(f"QdrantStore cannot open {self._where()}: {exc}") from exc
            try:
                yield client
            except (ResponseHandlingException, UnexpectedResponse) as exc:
                raise Unavailable(f"QdrantStore at {self._where()}: {exc}") from exc
            finally:
                client.close()

    def _where(self) -> str:
        if self.server is None:
            return str(self.path)
        return str(
            self.server.get("url") or f"{self.server['host']}:{self.server.get('port', 6333)}"
        )


def _point(chunk_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, chunk_id))


def _metadata(payload: Mapping[str, Any] | None) -> dict[str, MetadataValue]:
    return {
        k: v
        for k, v in (payload or {}).items()
        if k not in (_ID, _TEXT) and isinstance(v, str | int | float | bool)
    }


def _equals(where: Where) -> models.Filter:
    return models.Filter(must=[_match(k, v) for k, v in where.items()])


def _match(key: str, value: MetadataValue) -> models.Condition:
    if isinstance(value, float) and not value.is_integer():
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if isinstance(value, float):
        value = int(value)
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def to_qdrant(f: Filter) -> models.Filter:
    """A Qdrant filter that holds at least every chunk `f` passes (exact but for types)."""
    if isinstance(f, All):
        return models.Filter(must=[to_qdrant(item) for item in f.items])
    if isinstance(f, AnyOf):
        return models.Filter(should=[to_qdrant(item) for item in f.items])
    return _condition(f)


def _condition(f: Condition) -> models.Filter:
    if f.op in ("$gt", "$gte", "$lt", "$lte"):
        bound = {f.op[1:]: f.value}
        return models.Filter(must=[models.FieldCondition(key=f.key, range=models.Range(**bound))])
    values = f.value if isinstance(f.value, tuple) else (f.value,)
    any_of = models.Filter(should=[_match(f.key, v) for v in values])
    if f.op in ("$ne", "$nin"):
        return models.Filter(must_not=[any_of])
    return any_of
