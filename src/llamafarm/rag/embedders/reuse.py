"""Reusing the vectors of chunks embedded before: a file edited and processed again embeds only
its new chunks.

A database keeps a `VectorCache` beside its collection (`stores/{database}/`, so it goes with
it): vectors by (embedder fingerprint, SHA-256 of the chunk's exact text), in SQLite, bounded
to `max_bytes` by dropping the least recently used. Every dataset of the database shares it,
so the same document in another dataset reuses its vectors too. Vectors are kept as float32,
what the local embedder makes; a remote service's vectors lose their digits past float32's.

SQLite by hand rather than a cache library: entries must be shared by the worker's threads and
processes and survive restarts, bounded by bytes, and go with the database's folder.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from llamafarm.rag.embedders.base import Embedder, WrappedEmbedder

CACHE_FILE = "embedding-cache.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key TEXT PRIMARY KEY,
    vector BLOB NOT NULL,
    size INTEGER NOT NULL,
    used_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_used_at ON vectors (used_at);
"""
_ROW_OVERHEAD = 100
"""Bytes counted per entry besides its vector: the key, the row, the index."""
_LOOKUP = 500
"""Keys per SELECT (below SQLite's limit on bound parameters)."""


class VectorCache:
    """A database's cached vectors; opened on first use, one connection per instance."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._connection: sqlite3.Connection | None = None

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, keys: Sequence[str]) -> dict[str, list[float]]:
        """The cached vectors among `keys`; each found one counts as used now."""
        found: dict[str, list[float]] = {}
        db = self._open()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP):
            part = unique[start : start + _LOOKUP]
            marks = ",".join("?" * len(part))
            rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part)
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32).tolist()
        if found:
            with db:
                db.executemany(
                    "UPDATE vectors SET used_at = ? WHERE key = ?",
                    [(time.time(), key) for key in found],
                )
        return found

    def put(self, entries: Mapping[str, Sequence[float]]) -> None:
        """Store vectors, then drop the least recently used while over `max_bytes`."""
        if not entries:
            return
        db = self._open()
        now = time.time()
        rows = []
        for key, vector in entries.items():
            blob = np.asarray(vector, dtype=np.float32).tobytes()
            rows.append((key, blob, len(blob) + _ROW_OVERHEAD, now))
        with db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
            self._evict(db)

    def size(self) -> tuple[int, int]:
        """Entries and bytes (as counted against `max_bytes`)."""
        if not self.path.exists():
            return 0, 0
        count, total = self._open().execute("SELECT COUNT(*), SUM(size) FROM vectors").fetchone()
        return int(count), int(total or 0)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def vacuum(self) -> None:
        """Give back the pages of evicted entries."""
        db = self._open()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")

    def _evict(self, db: sqlite3.Connection) -> None:
        (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM vectors").fetchone()
        excess = int(total) - self.max_bytes
        if excess <= 0:
            return
        doomed: list[tuple[str]] = []
        for key, size in db.execute("SELECT key, size FROM vectors ORDER BY used_at, key"):
            doomed.append((key,))
            excess -= size
            if excess <= 0:
                break
        db.executemany("DELETE FROM vectors WHERE key = ?", doomed)

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")  # the worker's threads read at once
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection


def drop_cache(folder: Path) -> None:
    """Remove a database's cache (its database is deleted)."""
    for name in (CACHE_FILE, f"{CACHE_FILE}-wal", f"{CACHE_FILE}-shm"):
        (folder / name).unlink(missing_ok=True)


class ReusingEmbedder(WrappedEmbedder):
    """An embedder for one file: texts whose vectors `cache` holds (for this embedder) are not
    embedded again. `reused` and `embedded` count the texts of each kind."""

    def __init__(self, inner: Embedder, cache: VectorCache) -> None:
        super().__init__(inner)
        self.cache = cache
        self.reused = 0
        self.embedded = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts or not self.cache.enabled:
            vectors = self.inner.embed(texts)
            self._count(0, len(texts))
            return vectors
        prefix = self.inner.fingerprint()
        keys = [_key(prefix, text) for text in texts]
        with self._lock:  # one connection: the caller's threads take turns on it
            cached = self.cache.get(keys)
        missing = [i for i, key in enumerate(keys) if key not in cached]
        fresh = self.inner.embed([texts[i] for i in missing]) if missing else []
        new = {keys[i]: vector for i, vector in zip(missing, fresh, strict=True)}
        with self._lock:
            self.cache.put(new)
        self._count(len(texts) - len(missing), len(missing))
        by_key = {**cached, **new}
        return [list(by_key[key]) for key in keys]

    def close(self) -> None:
        """Closes the cache's connection; the inner embedder is its owner's."""
        with self._lock:
            self.cache.close()

    def _count(self, reused: int, embedded: int) -> None:
        with self._lock:
            self.reused += reused
            self.embedded += embedded


def _key(prefix: str, text: str) -> str:
    return hashlib.sha256(f"{prefix}\0{text}".encode()).hexdigest()
