"""LexicalIndex: a persistent BM25 index of chunk texts in SQLite FTS5, kept up to date per write.

The chunks live in a plain table and the FTS5 index reads their text from it (external
content); triggers keep the two in step, so an upsert or delete touches only its own rows and
a search never rebuilds anything. The index lives next to the vector store's files, and its
caller serializes writers across processes; each call here opens and closes its own
connection, so threads never share one.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter, to_sql

TOKENIZER = "porter unicode61 remove_diacritics 2"
BM25_K1 = 1.2
"""FTS5's bm25() term-frequency saturation (its default)."""
MAX_QUERY_TERMS = 256
"""Distinct words of a query that are searched; a longer query keeps its first ones."""
STOPWORDS = frozenset(
    "a about after all also an and any are as at be been but by can could did do "  # noqa: SIM905
    "does for from had has have he her his how i if in into is it its may more "
    "most no not of on or our she should so such than that the their them then "
    "there these they this those to was we were what when where which while who "
    "why will with would you your".split()
)

_WORD = re.compile(r"[^\W_]+")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BATCH = 500
"""Ids per DELETE: well under SQLite's limit on bound parameters."""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='seq', tokenize='{TOKENIZER}'
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_terms USING fts5vocab(chunks_fts, row);
CREATE TRIGGER IF NOT EXISTS chunks_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks (
    json_extract(metadata, '$.dataset'), json_extract(metadata, '$.file_hash')
);
CREATE TRIGGER IF NOT EXISTS chunks_update AFTER UPDATE OF text ON chunks
WHEN old.text IS NOT new.text BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
"""
_LAST_OBJECT = "chunks_by_file"
# ON CONFLICT DO UPDATE keeps the row (and its seq): INSERT OR REPLACE would delete it without
# firing the delete trigger, leaving the old text's postings behind.
_UPSERT = """
INSERT INTO chunks (id, text, metadata) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata
"""
_SEARCH = """
SELECT c.id, c.text, c.metadata, -bm25(chunks_fts) AS score
FROM chunks_fts JOIN chunks AS c ON c.seq = chunks_fts.rowid
WHERE chunks_fts MATCH ? AND {where}
ORDER BY score DESC, c.id
LIMIT ?
"""
# Without a filter FTS5 ranks and cuts by itself before the join: twice as fast (measured on
# SciFact, 5,183 chunks: 5.4 ms against 11.2 ms a query).
_SEARCH_ALL = """
SELECT c.id, c.text, c.metadata, -f.rank AS score
FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS f
JOIN chunks AS c ON c.seq = f.rowid
ORDER BY score DESC, c.id
"""


@dataclass(frozen=True)
class LexicalHit:
    id: str
    text: str
    metadata: dict[str, MetadataValue]
    score: float
    """BM25 as a fraction of the most the query could score, in [0, 1]."""


class LexicalIndex:
    """The BM25 index of one store, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        if not len(ids) == len(texts) == len(metadatas):
            raise ValueError("upsert: ids, texts and metadatas differ in length")
        if not ids:
            return
        rows = [
            (id_, text, json.dumps(dict(meta), ensure_ascii=False, allow_nan=False))
            for id_, text, meta in zip(ids, texts, metadatas, strict=True)
        ]
        with self._connect() as conn, _transaction(conn):
            conn.executemany(_UPSERT, rows)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove these chunks; returns how many there were."""
        if not ids or not self.exists:
            return 0
        removed = 0
        with self._connect() as conn, _transaction(conn):
            for start in range(0, len(ids), _BATCH):
                batch = list(ids[start : start + _BATCH])
                marks = ", ".join("?" * len(batch))
                removed += conn.execute(f"DELETE FROM chunks WHERE id IN ({marks})", batch).rowcount
        return removed

    def delete_where(self, where: Mapping[str, MetadataValue], *, keep: Sequence[str] = ()) -> int:
        """Remove the chunks whose metadata equals `where`, except those in `keep`.

        By metadata rather than by ids read from the vector store: a retry after a failure
        half-way still finds every row to remove here. Deletes by `dataset` and `file_hash`
        (what the pipeline and the datasets API use) are indexed.
        """
        if not self.exists or not where:
            return 0
        if not all(_PLAIN_KEY.fullmatch(key) for key in where):
            raise ValueError(f"delete_where takes plain metadata keys, got {sorted(where)}")
        condition = " AND ".join(f"json_extract(metadata, '$.{key}') = ?" for key in where)
        params = list(where.values())
        with self._connect() as conn, _transaction(conn):
            if not keep:
                return conn.execute(f"DELETE FROM chunks WHERE {condition}", params).rowcount
            conn.execute("CREATE TEMP TABLE keep (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO temp.keep VALUES (?)", [(i,) for i in keep])
            sql = f"DELETE FROM chunks WHERE {condition} AND id NOT IN (SELECT id FROM temp.keep)"
            return conn.execute(sql, params).rowcount

    def search(self, query: str, *, top_k: int, where: Filter | None = None) -> list[LexicalHit]:
        """The `top_k` best BM25 matches of any of the query's words, among chunks passing `where`.

        The filter runs in the same SQL as the ranking: the best `top_k` of the chunks that pass.
        Scores are BM25 divided by the most this query could score (every word's IDF times
        `k1 + 1`, which BM25 approaches as a word repeats): in [0, 1], comparable across queries.
        """
        terms = query_terms(query)
        if not terms or top_k <= 0 or not self.exists:
            return []
        params: list[Any] = [match_expression(terms)]
        sql = _SEARCH_ALL
        if where is not None:
            condition, where_params = to_sql(where, "c.metadata")
            sql = _SEARCH.format(where=condition)
            params.extend(where_params)
        params.append(top_k)
        with self._connect() as conn:
            conn.execute("BEGIN")  # one snapshot for the matches and the statistics
            try:
                rows = conn.execute(sql, params).fetchall()
                best = _most(conn, terms) if rows else 0.0
            finally:
                conn.execute("COMMIT")
        return [
            LexicalHit(id=id_, text=text, metadata=json.loads(meta), score=min(score / best, 1.0))
            for id_, text, meta, score in rows
        ]

    def count(self) -> int:
        if not self.exists:
            return 0
        with self._connect() as conn:
            total: int = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return total

    def term_stats(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each term (as the index stems it); keys are the terms as given.

        A term the tokenizer splits (`e-mail`) counts as its rarest part.
        """
        stems = _stems(terms)
        frequency: dict[str, int] = {}
        if self.exists and stems:
            with self._connect() as conn:
                for stem in {s for parts in stems.values() for s in parts}:
                    row = conn.execute("SELECT doc FROM chunks_terms WHERE term = ?", [stem])
                    found = row.fetchone()
                    frequency[stem] = found[0] if found else 0
        return {
            term: min((frequency.get(s, 0) for s in stems.get(term, ())), default=0)
            for term in terms
        }

    def compact(self) -> None:
        """Merge the full-text index's segments and give back the file's free pages."""
        if not self.exists:
            return
        with self._connect() as conn:
            conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            conn.execute("VACUUM")

    def drop(self) -> None:
        """Remove the index's files."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Autocommit mode: transactions are opened explicitly, and reads take no write lock.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            known = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", [_LAST_OBJECT]
            ).fetchone()
            if known is None:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            yield conn
        finally:
            conn.close()


def query_terms(text: str) -> list[str]:
    """The distinct lowercase words of `text`, stopwords dropped unless nothing else is left."""
    words = list(dict.fromkeys(word.lower() for word in _WORD.findall(text)))
    kept = [word for word in words if word not in STOPWORDS]
    return (kept or words)[:MAX_QUERY_TERMS]


def match_expression(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of `terms`; quoting makes every word a literal, never syntax."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _most(conn: sqlite3.Connection, terms: Sequence[str]) -> float:
    """The highest BM25 any chunk could get for these words: the sum of their IDF times k1+1.

    The IDF is FTS5's (`log((N - n + 0.5) / (n + 0.5))`, at least 1e-6); a word the tokenizer
    splits counts at its rarest part; words no chunk holds cannot score and are left out.
    """
    stems = _stems(terms)
    wanted = sorted({stem for parts in stems.values() for stem in parts})
    if not wanted:
        return 1.0
    marks = ", ".join("?" * len(wanted))
    found = dict(
        conn.execute(f"SELECT term, doc FROM chunks_terms WHERE term IN ({marks})", wanted)
    )
    total: int = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    most = 0.0
    for parts in stems.values():
        frequencies = [found.get(stem, 0) for stem in parts]
        if parts and min(frequencies) > 0:
            most += bm25_idf(total, min(min(frequencies), total)) * (BM25_K1 + 1)
    return most or 1.0


class Lexical(Protocol):
    """A store's BM25 index: this module's SQLite file, or rows in PostgreSQL
    (`lexical_pg.py`, for stores on a Chroma server); both score as FTS5's `bm25()`."""

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def delete_where(
        self, where: Mapping[str, MetadataValue], *, keep: Sequence[str] = ()
    ) -> int: ...

    def search(
        self, query: str, *, top_k: int, where: Filter | None = None
    ) -> list[LexicalHit]: ...

    def count(self) -> int: ...

    def term_stats(self, terms: Sequence[str]) -> dict[str, int]: ...

    def drop(self) -> None: ...


def term_counts(texts: Sequence[str]) -> list[dict[str, int]]:
    """Each text's tokens as the index's tokenizer stems them, with their counts: what a
    BM25 index outside SQLite stores, so that it matches and scores as FTS5 does."""
    if not texts:
        return []
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(f"CREATE VIRTUAL TABLE texts USING fts5(text, tokenize='{TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE tokens USING fts5vocab(texts, instance)")
        conn.executemany("INSERT INTO texts (rowid, text) VALUES (?, ?)", enumerate(texts, 1))
        rows = conn.execute("SELECT doc, term, count(*) FROM tokens GROUP BY doc, term")
        counts: list[dict[str, int]] = [{} for _ in texts]
        for doc, term, count in rows:
            counts[doc - 1][term] = count
    return counts


def query_stems(terms: Sequence[str]) -> dict[str, int]:
    """The stems a query's words search for, each with how many of the words it stands for.

    FTS5 scores each word of the `OR` query on its own, so two words with one stem (`runs
    running`) count it twice. A word the tokenizer splits further (rare: `query_terms` splits
    words much as it does) counts each part, where FTS5 would match the parts as a phrase.
    """
    weights: dict[str, int] = {}
    for parts in _stems(terms).values():
        for part in parts:
            weights[part] = weights.get(part, 0) + 1
    return weights


def bm25_idf(total: int, frequency: int) -> float:
    """FTS5's IDF of a term `frequency` of `total` chunks hold (at least 1e-6)."""
    return max(math.log((total - frequency + 0.5) / (frequency + 0.5)), 1e-6)


def _stems(terms: Sequence[str]) -> dict[str, list[str]]:
    """Each term's tokens as the index's tokenizer writes them (`Running` → `run`)."""
    if not terms:
        return {}
    # A throwaway in-memory FTS5 table with the same tokenizer: its per-token vocabulary is
    # the exact stemming of the index, without a second stemmer to keep in agreement.
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize='{TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE stems USING fts5vocab(words, instance)")
        unique = list(dict.fromkeys(terms))
        conn.executemany("INSERT INTO words (rowid, word) VALUES (?, ?)", enumerate(unique, 1))
        rows = conn.execute("SELECT doc, term FROM stems ORDER BY doc, offset").fetchall()
    found: dict[str, list[str]] = {term: [] for term in unique}
    for doc, stem in rows:
        found[unique[doc - 1]].append(stem)
    return found
