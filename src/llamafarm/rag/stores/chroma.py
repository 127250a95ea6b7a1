"""ChromaStore: an embedded ChromaDB `PersistentClient` in the project's folder.

Its clients come from a `ChromaClients` (`chroma_clients.py`): the owner's open clients, and the
cross-process lock and generation file that keep the API server and the worker from reading a
stale index (the one piece of hand-written coordination around Chroma).

With `host` (and `port`) in its config, or the server-wide `LF_CHROMA_URL`, the store is a
collection of a Chroma server instead, through the owner's `chromadb.HttpClient`: the server is
the one copy every process sees, so there is no folder lock and no generation. Its collection is
named after the namespace, project and collection, so projects sharing a server stay apart; its
BM25 index is in the state database when that is PostgreSQL (`lexical_pg.py`), which every
process sees too, else a file in the store's folder (one machine).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import InternalError, InvalidArgumentError, NotFoundError

from llamafarm.documents import MetadataValue
from llamafarm.errors import BadRequest, ConfigInvalid, Conflict
from llamafarm.rag.filters import Filter, to_chroma
from llamafarm.rag.index import RECORD_LOCK
from llamafarm.rag.stores.base import DistanceMetric, Hit, Stored, Where, server_collection
from llamafarm.rag.stores.bm25 import Lexical
from llamafarm.rag.stores.chroma_clients import (
    LOCK,
    ChromaClients,
    ChromaServer,
    CollectionKey,
    bump,
    forget,
    is_current,
    locked,
    locked_unless_busy,
    process_locked,
    unavailable,
)
from llamafarm.rag.stores.lexical import LexicalIndex
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.rag.stores.metrics import (
    DISTANCES,
    RESCORE_CANDIDATES,
    approximation_error,
    distances,
    norms,
    similarity,
    size_conflict,
    space_of,
)

CONFIG_KEYS = frozenset({"collection_name", "distance_function", "distance_metric", "host", "port"})
LLAMAFARM_KEYS = frozenset(
    {"embedding_dimension", "enable_deduplication", "embedding_function", "persist_directory"}
)
"""LlamaFarm's keys accepted and not acted on (warned about at validation)."""
CHROMA_FILE = "chroma.sqlite3"
LEXICAL_SUFFIX = ".lexical.sqlite3"
FILTER_IDS = 50_000
"""Most chunks passing a filter that a search hands Chroma by id (`ChromaStore._filter_index`)."""
FILTER_VECTORS = 50_000
"""Most chunks passing a filter whose kept embeddings a search reads (`_nearest_kept`)."""


class ChromaStore:
    def __init__(
        self,
        *,
        path: Path,
        collection_name: str,
        distance_function: str = "cosine",
        server: ChromaServer | None = None,
        clients: ChromaClients | None = None,
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
        """A Chroma server; None: the embedded client in `path`."""
        self.clients = ChromaClients() if clients is None else clients
        """The owner's clients (the app's or the worker's, through their `ModelCache`); a
        store made without one (a test, a config check) gets its own, closed with nothing."""

    @classmethod
    def from_config(
        cls,
        *,
        path: Path,
        database: str,
        config: Mapping[str, Any],
        clients: ChromaClients | None = None,
        scope: Sequence[str] = (),
    ) -> ChromaStore:
        """`scope`: the namespace and project, which name the collection on a server."""
        unknown = set(config) - CONFIG_KEYS - LLAMAFARM_KEYS
        if unknown:
            raise ConfigInvalid(f"ChromaStore config: unknown keys {sorted(unknown)}")
        default_name = database if len(database) >= 3 else f"{database}_chunks"
        distance = config.get("distance_function") or config.get("distance_metric") or "cosine"
        name = str(config.get("collection_name") or default_name)
        server = _server(config) or (clients.server if clients is not None else None)
        if server is not None and _valid_collection(name):
            name = server_collection(scope, name)
        return cls(
            path=path,
            collection_name=name,
            distance_function=str(distance),
            server=server,
            clients=clients,
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
        with self._collection(write=True) as collection:
            lexical = self._lexical(collection)
            _upsert(collection, ids, texts, vectors, metadatas)
            if isinstance(lexical, LexicalIndex):
                lexical.upsert(ids, texts, metadatas, vectors)
            else:
                lexical.upsert(ids, texts, metadatas)

    def delete(self, where: Where, *, keep: Sequence[str] = ()) -> int:
        with self._collection(write=True) as collection:
            # The lexical side first, by metadata: if the vectors' delete then fails, a retry
            # still finds them; the other order could leave lexical rows no retry would see.
            self._lexical(collection).delete_where(where, keep=keep)
            kept = set(keep)
            found = collection.get(where=_where(where), include=[])["ids"]
            ids = sorted(i for i in found if i not in kept)
            if ids:
                collection.delete(ids=ids)
            return len(ids)

    def remove(self, ids: Sequence[str]) -> None:
        with self._collection(write=True) as collection:
            self._lexical(collection).delete(ids)
            step = collection._client.get_max_batch_size()
            for start in range(0, len(ids), step):
                collection.delete(ids=list(ids[start : start + step]))

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
        texts: bool = True,
    ) -> list[Hit]:
        space = self.space if metric is None else space_of(metric)
        wanted = top_k if space == self.space else max(top_k, RESCORE_CANDIDATES)
        # Without texts: reading 100 candidates' documents and metadata costs Chroma 9 ms of
        # CPU against 1 ms for their ids and distances (bench/scale.py, 1,300 chunks).
        include: list[Any] = ["documents", "metadatas", "distances"] if texts else ["distances"]
        if space != self.space:
            include.append("embeddings")
        query = np.asarray([vector], dtype=np.float32)
        with self._collection(write=False) as collection:
            index = self._filter_index(collection, where)
            found: Any = None
            passing: list[str] | None = None
            if index is not None and where is not None:
                found = self._nearest_kept(index, query, where, wanted, include)
                if found is None:
                    passing = index.ids_where(where, limit=FILTER_IDS)
            if passing == []:
                return []
            try:
                if found is None and passing is not None:
                    found = _query_among(collection, query, passing, wanted, include)
                if found is None:
                    found = collection.query(
                        query_embeddings=query,
                        n_results=wanted,
                        where=to_chroma(where) if where is not None else None,
                        include=include,
                    )
            except InvalidArgumentError as exc:
                if "dimension" not in str(exc):
                    raise BadRequest(f"The vector store refused the query: {exc}") from exc
                raise size_conflict(self.collection_name, len(vector)) from exc
        ids = found["ids"][0]
        # "" marks a hit whose text was not asked for; None, one a write removed (below).
        documents = (found["documents"] or [[""] * len(ids)])[0]
        metadatas = (found["metadatas"] or [[{}] * len(ids)])[0]
        if space == self.space:
            scores = [similarity(space, d) for d in (found["distances"] or [[]])[0]]
        else:
            # Shaped (hits, dimension) even with no hits: an empty list is shape (0,), which
            # the distance arithmetic cannot broadcast against the query (a 500 on an empty
            # collection, found by tests/api/test_fuzz.py).
            stored = np.asarray((found["embeddings"] or [[]])[0], dtype=np.float32).reshape(
                len(ids), query.shape[1]
            )
            scores = [similarity(space, d) for d in distances(space, query[0], stored)]
        # A chunk without text was removed by a write since this process loaded the index.
        hits = [
            Hit(id=i, text=t, metadata=_scalars(m), score=s)
            for i, t, m, s in zip(ids, documents, metadatas, scores, strict=True)
            if t is not None
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.id))
        return hits[:top_k]

    def fetch(self, ids: Sequence[str]) -> dict[str, Hit]:
        if not ids:
            return {}
        with self._collection(write=False) as collection:
            found = collection.get(ids=list(ids), include=["documents", "metadatas"])
        documents = cast(list[str | None], found["documents"])
        metadatas = cast(list[Mapping[str, Any] | None], found["metadatas"])
        return {
            i: Hit(id=i, text=t, metadata=_scalars(m), score=0.0)
            for i, t, m in zip(found["ids"], documents, metadatas, strict=True)
            if t is not None
        }

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
                self._lexical(collection).drop()
                with contextlib.suppress(NotFoundError):  # another process's drop went first
                    collection._client.delete_collection(self.collection_name)
            return
        if not self.path.exists():
            return
        with locked(self.path):
            forget(self.path)
            # Everything but the lock files, which other processes may hold open right now.
            for entry in self.path.iterdir():
                if entry.name in (LOCK, RECORD_LOCK):
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            bump(self.path)

    def dump(self, *, page: int = 1000) -> Iterator[Stored]:
        offset = 0
        while True:
            with self._collection(write=False) as collection:
                found = collection.get(
                    include=["documents", "metadatas", "embeddings"], limit=page, offset=offset
                )
            if not found["ids"]:
                return
            vectors = np.asarray(found["embeddings"], dtype=np.float32)
            yield Stored(
                ids=list(found["ids"]),
                texts=[t or "" for t in found["documents"] or []],
                vectors=vectors.reshape(len(found["ids"]), -1),
                metadatas=[_scalars(m) for m in found["metadatas"] or []],
            )
            offset += len(found["ids"])

    def compact(self) -> None:
        if self.server is not None:
            if self.clients.lexical is None:  # its BM25 file; PostgreSQL vacuums its own
                with locked(self.path):
                    for lexical in self.path.glob(f"*{LEXICAL_SUFFIX}"):
                        LexicalIndex(lexical).compact()
            return
        if not (self.path / CHROMA_FILE).exists():
            return
        with locked(self.path):
            # This process's system closed first: its connections and any folder it still
            # holds of a collection deleted since (Chroma leaves those folders behind).
            forget(self.path)
            with contextlib.closing(sqlite3.connect(self.path / CHROMA_FILE, timeout=30)) as db:
                segments = {row[0] for row in db.execute("SELECT id FROM segments")}
                collections = {row[0] for row in db.execute("SELECT name FROM collections")}
                db.execute("VACUUM")
            for entry in self.path.iterdir():
                if entry.is_dir() and _is_uuid(entry.name) and entry.name not in segments:
                    shutil.rmtree(entry)  # the vectors of a collection deleted earlier
                elif entry.name.endswith(LEXICAL_SUFFIX):
                    if entry.name.removesuffix(LEXICAL_SUFFIX) in collections:
                        LexicalIndex(entry).compact()
                    else:
                        LexicalIndex(entry).drop()  # of a collection deleted earlier
            bump(self.path)

    def discard(self) -> None:
        with self._collection(write=True) as collection:
            self._lexical(collection).drop()
            collection._client.delete_collection(self.collection_name)
            self.clients.forget_collection(self.path, self.collection_name)

    def _filter_index(self, collection: Collection, where: Filter | None) -> LexicalIndex | None:
        """The BM25 file, which answers a filtered search faster than Chroma when `where` tests
        an indexed key (`bm25.INDEXED_KEYS`) for equality: None without a filter, and for a
        store on a server (its BM25 rows keep no embeddings).

        From the embeddings it keeps (`_nearest_kept`), or else from the ids of the chunks
        that pass (`LexicalIndex.ids_where`), among which Chroma searches in a half to a quarter
        of the time of its own `where` on the same chunks, which reads the metadata of every
        chunk that passes (bench/scale.py's 100,000 chunks, a dataset's 800-1,400: 40-65
        against 115-145 ms, the same hits). A chunk whose vector Chroma has and whose BM25 row
        a crash lost is not found by such a filter (the store writes the vectors first).
        """
        if where is None or self.server is not None:
            return None
        lexical = self._lexical(collection)
        return lexical if isinstance(lexical, LexicalIndex) else None

    def _nearest_kept(
        self,
        lexical: LexicalIndex,
        query: np.ndarray,
        where: Filter,
        wanted: int,
        include: list[Any],
    ) -> dict[str, Any] | None:
        """Chroma's query answer, exact, from the embeddings the BM25 file keeps of the chunks
        passing `where` (`LexicalIndex.vectors_where`); None where it cannot answer.

        Chroma's own filtered query pays about 40-90 ms at 100,000 chunks however few pass
        (bench/scale.py); this reads only the passing chunks' embeddings in int16 (768 bytes at
        384 dimensions), then the float32 ones of the chunks that can be among the nearest
        given the int16's error (`approximation_error`), and the rows of the hits returned.
        """
        kept = lexical.vectors_where(where, limit=FILTER_VECTORS)
        if kept is None:
            return None
        seqs, approximate, moved = kept
        if len(seqs) and approximate.shape[1] != query.shape[1]:
            return None  # Chroma's query raises the size conflict
        if len(seqs) > wanted:
            lengths = norms(approximate)
            rough = distances(self.space, query[0], approximate, lengths)
            error = approximation_error(self.space, query[0], rough, moved, lengths)
            # No chunk farther than the `wanted`-th nearest could be, at the most, can be
            # among the nearest or tied with the last of them.
            ceiling = np.partition(rough + error, wanted - 1)[wanted - 1]
            seqs = seqs[rough - error <= ceiling]
        seqs, stored = lexical.exact(seqs.tolist())
        found = distances(self.space, query[0], stored) if len(seqs) else np.zeros(0)
        # The `wanted` nearest, and any tied with the last of them: ties are ordered by id, as
        # Chroma's answer is sorted below, so only these few chunks' rows are read.
        cut = np.partition(found, wanted - 1)[wanted - 1] if len(seqs) > wanted else np.inf
        near = np.flatnonzero(found <= cut)
        rows = lexical.rows(seqs[near].tolist())
        # A chunk the file lost since it was chosen (a delete in between) has no row: left out.
        ranked = sorted(
            (float(found[i]), rows[seq][0], i, seq)
            for i, seq in zip(near.tolist(), seqs[near].tolist(), strict=True)
            if seq in rows
        )[:wanted]
        picked = [rows[seq] for _, _, _, seq in ranked]
        return {
            "ids": [[id_ for id_, _, _ in picked]],
            "distances": [[distance for distance, _, _, _ in ranked]],
            "documents": [[text for _, text, _ in picked]] if "documents" in include else None,
            "metadatas": [[meta for _, _, meta in picked]] if "metadatas" in include else None,
            "embeddings": [stored[[i for _, _, i, _ in ranked]]]
            if "embeddings" in include
            else None,
        }

    def _lexical_path(self) -> Path:
        return self.path / f"{self.collection_name}{LEXICAL_SUFFIX}"

    def _lexical(self, collection: Collection) -> Lexical:
        """The collection's BM25 index; a store made before there was one gets it filled once
        (a file's; the PostgreSQL index is as old as server stores)."""
        if self.server is not None and self.clients.lexical is not None:
            return PostgresLexicalIndex(self.clients.lexical, store=self.collection_name)
        lexical = LexicalIndex(self._lexical_path())
        if not lexical.exists and collection.count():
            # Filled under another name and renamed when complete: an interrupted fill
            # leaves no partial index that would pass for a whole one.
            partial = LexicalIndex(lexical.path.with_name(lexical.path.name + ".partial"))
            partial.drop()
            step = collection._client.get_max_batch_size()
            offset = 0
            while True:
                page = collection.get(
                    include=["documents", "metadatas", "embeddings"], limit=step, offset=offset
                )
                if not page["ids"]:
                    break
                texts = [t or "" for t in page["documents"] or []]
                metadatas = [_scalars(m) for m in page["metadatas"] or []]
                vectors = np.asarray(page["embeddings"], dtype=np.float32)
                partial.upsert(page["ids"], texts, metadatas, vectors.reshape(len(texts), -1))
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
        self.clients.forget_collection(self.path, self.collection_name)
        return client.create_collection(
            self.collection_name,
            embedding_function=None,
            configuration=cast(Any, {"hnsw": {"space": self.space}}),
        )

    @contextlib.contextmanager
    def _collection(self, *, write: bool) -> Iterator[Collection]:
        if self.server is not None:
            if self.clients.lexical is None:
                self.path.mkdir(parents=True, exist_ok=True)  # for the BM25 file
            try:
                yield self._open(self.clients.http(self.server))
            except httpx.TransportError as exc:  # refused, reset, timed out
                raise unavailable(self.server, exc) from exc
            return
        self.path.mkdir(parents=True, exist_ok=True)
        key = (self.path, self.collection_name, self.space)
        if not write:
            with self._reading(key) as collection:
                yield collection
            return
        with locked(self.path):
            yield self.clients.collection(key, self._open)
            bump(self.path)

    @contextlib.contextmanager
    def _reading(self, key: CollectionKey) -> Iterator[Collection]:
        """A collection to read, without waiting for another process's write when this
        process has the collection open already.

        Chroma answers a query from the index its system loaded, in memory, and reads the
        texts from SQLite, which serves readers beside a writer (so does the BM25 index, in
        WAL mode): a reader needs the folder's lock only to load the files' index again, which
        a write in progress may be changing. So an open collection that has read the latest
        generation answers with no folder lock; one that is stale reloads under the lock when
        it is free, and while a write holds the lock, answers as of its last load (a write
        behind, never torn: chunks the write removed come back without text and are dropped
        by `search`). Only a process with nothing open waits for the write. Reads of an open,
        current collection share this process's lock (`process_locked`): the two sides of a
        hybrid query and concurrent requests run together.
        """
        lexical = self._lexical_path().exists()
        with process_locked():
            # Without the BM25 index a read would fill it: a write, under the lock below.
            opened = self.clients.opened(key) if lexical else None
            if opened is not None and is_current(self.path):
                yield opened
                return
        with locked_unless_busy(self.path) as held:
            if held:
                yield self.clients.collection(key, self._open)
                return
            opened = self.clients.opened(key) if lexical else None
            if opened is not None:
                yield opened
                return
        with locked(self.path):
            yield self.clients.collection(key, self._open)


def _server(config: Mapping[str, Any]) -> ChromaServer | None:
    host = config.get("host")
    if host in (None, ""):
        return None
    port = config.get("port", 8000)
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigInvalid("ChromaStore config: host must be a name and port a TCP port")
    return ChromaServer(host, port)


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


def _query_among(
    collection: Collection, query: np.ndarray, ids: list[str], wanted: int, include: list[Any]
) -> Any:
    """Chroma's nearest of `ids`; None when Chroma lacks one of them (its index loaded before
    a write this process has not reloaded yet), for the caller to ask with `where` instead."""
    try:
        return collection.query(query_embeddings=query, n_results=wanted, ids=ids, include=include)
    except InternalError as exc:
        if "finding id" not in str(exc):
            raise
        return None


def _scalars(metadata: Mapping[str, Any] | None) -> dict[str, MetadataValue]:
    """A chunk's metadata as stored: this project writes scalars only."""
    return {k: v for k, v in (metadata or {}).items() if isinstance(v, str | int | float | bool)}


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


def _valid_collection(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return (
        3 <= len(name) <= 512 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()
    )


def _where(where: Where) -> Any:
    clauses = [{key: value} for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
