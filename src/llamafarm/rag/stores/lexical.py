"""LexicalIndex: a persistent BM25 index of chunk texts in SQLite FTS5, kept up to date per write.

The chunks live in a plain table and the FTS5 index reads their text, and tags of the keys
filters use most, from it (external content); triggers keep the two in step, so an upsert or
delete touches only its own rows and a search never rebuilds anything. The index lives next to
the vector store's files, and its caller serializes writers across processes; each call here
opens and closes its own connection, so threads never share one.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from llamafarm.documents import MetadataValue
from llamafarm.errors import Unavailable
from llamafarm.rag.filters import All, Condition, Filter, to_sql
from llamafarm.rag.stores.bm25 import (
    BM25_K1,
    INDEXED_KEYS,
    TOKENIZER,
    LexicalHit,
    bm25_idf,
    query_terms,
    stems_of,
)

CANDIDATE_POSTINGS = 10_000
"""Chunks holding the query's words (summed over the words) above which an unfiltered search
ranks only the chunks holding its rarer words (`_ranking`)."""
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BATCH = 500
"""Ids per DELETE: well under SQLite's limit on bound parameters."""
BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another's write to end; a search, for a conversion too."""
CONVERSION_WAIT_S = 3600.0
"""How long a write waits for another connection's conversion of the file (`_migrate`) to end:
the worker's files wait for it rather than fail."""
_TAG_PREFIXES = {"dataset": "d", "file_hash": "f", "document_id": "i"}
"""A tag's first letter, by key of `INDEXED_KEYS` (`tag`)."""
_TAGS = " || ' ' || ".join(
    f"'{_TAG_PREFIXES[key]}' || CASE json_type(metadata, '$.{key}') "
    f"WHEN 'text' THEN hex(json_extract(metadata, '$.{key}')) || '0' ELSE '' END"
    for key in INDEXED_KEYS
)
"""SQL of a chunk's tags, one a key of `INDEXED_KEYS` whether or not its metadata holds it: where
the key's value is a string, the key's letter, the value's UTF-8 bytes in hex and a 0 (`tag`);
otherwise the letter alone. Always as many, so that every chunk's length, which FTS5's bm25()
counts over both columns, is its words plus the same `TAG_TOKENS`. A tag is one token that the
tokenizer keeps as it is (letters and digits, folded to lower case, ending in a digit, which no
rule of the Porter stemmer takes off), so it stands for one value only."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks (
    json_extract(metadata, '$.dataset'), json_extract(metadata, '$.file_hash')
);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks (json_extract(metadata, '$.file_hash'));
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (json_extract(metadata, '$.document_id'));
CREATE TABLE IF NOT EXISTS vectors (seq INTEGER PRIMARY KEY, vector BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS vectors_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM vectors WHERE seq = old.seq;
END;
CREATE TABLE IF NOT EXISTS compact (
    seq INTEGER PRIMARY KEY, scale REAL NOT NULL, vector BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS compact_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM compact WHERE seq = old.seq;
END;
INSERT OR IGNORE INTO compact (seq, scale, vector)
SELECT seq, lf_scale(vector), lf_ints(vector) FROM vectors;
"""
# `compact`: each kept embedding again as int16 times a scale (`_quantize`), half the bytes, for
# `vectors_where` to read; the float32 in `vectors` rescore the few nearest exactly. The last
# statement fills it for a file made before it was (once), skipping (OR IGNORE, on NOT NULL)
# the vectors `_quantize` cannot hold.
_LAST_OBJECT = "compact_delete"
"""The schema's last object: a file without it (made by an older version) gets the rest."""
_VERSION = 1
"""The file's `user_version` once its full-text index has the `tags` column (`_FULL_TEXT`)."""
_ADD_TAGS = f"ALTER TABLE chunks ADD COLUMN tags TEXT GENERATED ALWAYS AS ({_TAGS}) VIRTUAL"
_FULL_TEXT = (
    "DROP TRIGGER IF EXISTS chunks_insert",
    "DROP TRIGGER IF EXISTS chunks_delete",
    "DROP TRIGGER IF EXISTS chunks_update",
    "DROP TABLE IF EXISTS chunks_terms",
    "DROP TABLE IF EXISTS chunks_fts",
    f"""CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, tags, content='chunks', content_rowid='seq', tokenize='{TOKENIZER}'
    )""",
    "CREATE VIRTUAL TABLE chunks_terms USING fts5vocab(chunks_fts, col)",
    """CREATE TRIGGER chunks_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text, tags) VALUES (new.seq, new.text, new.tags);
    END""",
    """CREATE TRIGGER chunks_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, tags)
        VALUES ('delete', old.seq, old.text, old.tags);
    END""",
    """CREATE TRIGGER chunks_update AFTER UPDATE OF text, metadata ON chunks
    WHEN old.text IS NOT new.text OR old.tags IS NOT new.tags BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, tags)
        VALUES ('delete', old.seq, old.text, old.tags);
        INSERT INTO chunks_fts(rowid, text, tags) VALUES (new.seq, new.text, new.tags);
    END""",
    "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)')",
    "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')",
)
"""The full-text index of the chunks' text and tags (`_TAGS`), made anew from the chunks: a file
from before it had tags loses its one-column index (1,000,042 chunks: 64 s, once). A filter on an
indexed key is then a term FTS5 intersects with the query's words itself (`_ranking`). `rank` is
bm25() of the text alone: a tag matched adds nothing to a score. `chunks_terms` counts a word's
chunks by column, so a word spelled like a tag counts only where it is text."""
# ON CONFLICT DO UPDATE keeps the row (and its seq): INSERT OR REPLACE would delete it without
# firing the delete trigger, leaving the old text's postings behind.
_UPSERT = """
INSERT INTO chunks (id, text, metadata) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata
"""
_SEARCH = """
SELECT c.id, c.text, c.metadata, -chunks_fts.rank AS score
FROM chunks_fts JOIN chunks AS c ON c.seq = chunks_fts.rowid
WHERE chunks_fts MATCH ? AND {where}
ORDER BY score DESC, c.id
LIMIT ?
"""
# Among the chunks holding the rarer words (`_ranking`): the first MATCH gives those chunks and
# their score over those words, the second (`rare AND all`) their score over all the words with
# the rare ones counted twice; CROSS JOIN keeps FTS5 driving the second, never looked up by rowid.
_SEARCH_AMONG = """
WITH rare AS MATERIALIZED (
    SELECT rowid AS seq, rank AS score FROM chunks_fts WHERE chunks_fts MATCH ?
), best AS (
    SELECT chunks_fts.rowid AS seq, rare.score - chunks_fts.rank AS score
    FROM chunks_fts CROSS JOIN rare ON rare.seq = chunks_fts.rowid
    WHERE chunks_fts MATCH ?
    ORDER BY score DESC
    LIMIT ?
)
SELECT c.id, c.text, c.metadata, best.score
FROM best JOIN chunks AS c ON c.seq = best.seq
ORDER BY best.score DESC, c.id
"""
_PUT_VECTOR = "INSERT OR REPLACE INTO vectors (seq, vector) SELECT seq, ? FROM chunks WHERE id = ?"
_PUT_COMPACT = """
INSERT OR REPLACE INTO compact (seq, scale, vector) SELECT seq, ?, ? FROM chunks WHERE id = ?
"""
_FORGET = "DELETE FROM {table} WHERE seq = (SELECT seq FROM chunks WHERE id = ?)"
_COMPACT_WHERE = """
SELECT c.seq, q.scale, q.vector FROM chunks AS c LEFT JOIN compact AS q ON q.seq = c.seq
WHERE {test}{where}
LIMIT ?
"""
# When the indexed test is the whole filter, the index alone gives the rows' seq (it holds the
# rowid) and the chunk rows are never read: 2.6 against 4.4 us of CPU a chunk on a new
# connection (bench/scale.py's 100,000 chunks), which a filter passing 10,000 chunks of a
# million pays on every query; at 1M, where the rows are not all in the page cache, 159-196
# against 61-65 ms p50 a vector + filter query.
# Without a filter, or with one that its tags answer, FTS5 ranks and cuts by itself before the
# join: twice as fast (measured on SciFact, 5,183 chunks: 5.4 ms against 11.2 ms a query).
_SEARCH_ALL = """
SELECT c.id, c.text, c.metadata, -f.rank AS score
FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS f
JOIN chunks AS c ON c.seq = f.rowid
ORDER BY score DESC, c.id
"""


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
        vectors: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> None:
        """`vectors`: the chunks' embeddings, kept for `vectors_where`; without them any kept
        for these ids are removed (they might be another embedder's)."""
        if not len(ids) == len(texts) == len(metadatas):
            raise ValueError("upsert: ids, texts and metadatas differ in length")
        if vectors is not None and len(vectors) != len(ids):
            raise ValueError("upsert: ids and vectors differ in length")
        if not ids:
            return
        rows = [
            (id_, text, json.dumps(dict(meta), ensure_ascii=False, allow_nan=False))
            for id_, text, meta in zip(ids, texts, metadatas, strict=True)
        ]
        matrix = None if vectors is None else np.asarray(vectors, np.float32).reshape(len(ids), -1)
        scales, ints = (np.zeros(0), np.zeros(0)) if matrix is None else _quantize(matrix)
        with self._connect(writer=True) as conn, _transaction(conn):
            conn.executemany(_UPSERT, rows)
            if matrix is None:
                for table in ("vectors", "compact"):
                    conn.executemany(_FORGET.format(table=table), [(id_,) for id_ in ids])
                return
            conn.executemany(
                _PUT_VECTOR, [(v.tobytes(), i) for v, i in zip(matrix, ids, strict=True)]
            )
            # A vector `_quantize` cannot hold keeps no compact copy: filters passing its chunk
            # are answered another way (`vectors_where` gives None).
            held = np.isfinite(scales)
            conn.executemany(
                _PUT_COMPACT,
                [
                    (float(s), v.tobytes(), i)
                    for s, v, i, ok in zip(scales, ints, ids, held, strict=True)
                    if ok
                ],
            )
            conn.executemany(
                _FORGET.format(table="compact"),
                [(i,) for i, ok in zip(ids, held, strict=True) if not ok],
            )

    def delete(self, ids: Sequence[str]) -> int:
        """Remove these chunks; returns how many there were."""
        if not ids or not self.exists:
            return 0
        removed = 0
        with self._connect(writer=True) as conn, _transaction(conn):
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
        with self._connect(writer=True) as conn, _transaction(conn):
            if not keep:
                return conn.execute(f"DELETE FROM chunks WHERE {condition}", params).rowcount
            conn.execute("CREATE TEMP TABLE keep (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO temp.keep VALUES (?)", [(i,) for i in keep])
            sql = f"DELETE FROM chunks WHERE {condition} AND id NOT IN (SELECT id FROM temp.keep)"
            return conn.execute(sql, params).rowcount

    def search(self, query: str, *, top_k: int, where: Filter | None = None) -> list[LexicalHit]:
        """The `top_k` best BM25 matches of any of the query's words, among chunks passing `where`.

        The filter runs in the same SQL as the ranking: the best `top_k` of the chunks that pass.
        Without a filter, when the query's words are in more than `CANDIDATE_POSTINGS` chunks
        (summed over the words), the best are found among the chunks that hold one of its
        rarer words (`_ranking`), each scored on all the words as FTS5 would.
        Scores are BM25 divided by the most this query could score (every word's IDF times
        `k1 + 1`, which BM25 approaches as a word repeats): in [0, 1], comparable across queries.
        """
        terms = query_terms(query)
        if not terms or top_k <= 0 or not self.exists:
            return []
        with self._connect() as conn:
            conn.execute("BEGIN")  # one snapshot for the matches and the statistics
            try:
                frequencies = _frequencies(conn, terms)
                sql, params = _ranking(terms, frequencies, top_k=top_k, where=where)
                rows = conn.execute(sql, params).fetchall()
                best = _most(frequencies, _total(conn)) if rows else 0.0
            finally:
                conn.execute("COMMIT")
        return [
            LexicalHit(id=id_, text=text, metadata=json.loads(meta), score=min(score / best, 1.0))
            for id_, text, meta, score in rows
        ]

    def ids_where(self, where: Filter, *, limit: int) -> list[str] | None:
        """The ids of the chunks passing `where`, read through the index of one of its keys;
        None when `where` tests no indexed key for equality or more than `limit` chunks pass."""
        indexed = indexed_condition(where)
        if indexed is None or not self.exists:
            return None
        test, params = _indexed_test(indexed)
        condition, where_params = to_sql(where, "metadata")
        sql = f"SELECT id FROM chunks WHERE {test} AND {condition} LIMIT ?"
        with self._connect() as conn:
            ids = [row[0] for row in conn.execute(sql, [*params, *where_params, limit + 1])]
        return ids if len(ids) <= limit else None

    def vectors_where(
        self, where: Filter, *, limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The row numbers (int64), kept embeddings and how far each can be from the embedding
        stored (`dequantize`) of the chunks passing `where`, found as `ids_where` finds them;
        None when they cannot be found that way or a chunk that passes has no embedding kept
        (a file from before they were, a store that gives none, or a vector `_quantize` cannot
        hold). `exact` gives the stored embeddings and `rows` the chunks of the row numbers
        chosen."""
        indexed = indexed_condition(where)
        if indexed is None or not self.exists:
            return None
        test, params = _indexed_test(indexed, "c.metadata")
        if isinstance(where, Condition):  # the indexed test is the whole filter
            sql = _COMPACT_WHERE.format(test=test, where="")
        else:
            condition, where_params = to_sql(where, "c.metadata")
            sql = _COMPACT_WHERE.format(test=test, where=f" AND {condition}")
            params += where_params
        with self._connect() as conn:
            rows = conn.execute(sql, [*params, limit + 1]).fetchall()
        if len(rows) > limit:
            return None
        if not rows:
            empty = np.zeros(0)
            return empty.astype(np.int64), np.zeros((0, 0), dtype=np.float32), empty
        seqs, scales, blobs = zip(*rows, strict=True)  # in C: 10,000 rows a query at 1M chunks
        if None in blobs or len(set(map(len, blobs))) != 1:
            return None  # one without an embedding, or two sizes (an embedder changed)
        ints = np.frombuffer(b"".join(blobs), dtype=np.int16).reshape(len(rows), -1)
        vectors, moved = dequantize(np.array(scales, dtype=np.float64), ints)
        return np.array(seqs, dtype=np.int64), vectors, moved

    def exact(self, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The float32 embeddings of these rows (of `vectors_where`), for those still held: their
        row numbers, in the order given, and the embeddings, one row each."""
        found: dict[int, bytes] = dict(self._by_seq("SELECT seq, vector FROM vectors", seqs))
        held = [int(seq) for seq in seqs if int(seq) in found]
        if not held:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(found[seq] for seq in held), dtype=np.float32)
        return np.array(held, dtype=np.int64), matrix.reshape(len(held), -1)

    def rows(self, seqs: Sequence[int]) -> dict[int, tuple[str, str, dict[str, MetadataValue]]]:
        """The id, text and metadata of each of these rows (of `vectors_where`) still held."""
        sql = "SELECT seq, id, text, metadata FROM chunks"
        return {
            seq: (id_, text, json.loads(meta)) for seq, id_, text, meta in self._by_seq(sql, seqs)
        }

    def _by_seq(self, select: str, seqs: Sequence[int]) -> list[Any]:
        """The rows `select` gives for these row numbers, read `_BATCH` at a time."""
        found: list[Any] = []
        if len(seqs) and self.exists:
            with self._connect() as conn:
                for start in range(0, len(seqs), _BATCH):
                    batch = [int(seq) for seq in seqs[start : start + _BATCH]]
                    marks = ", ".join("?" * len(batch))
                    found += conn.execute(f"{select} WHERE seq IN ({marks})", batch).fetchall()
        return found

    def count(self) -> int:
        if not self.exists:
            return 0
        with self._connect() as conn:
            return _total(conn)

    def term_stats(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each term (as the index stems it); keys are the terms as given.

        A term the tokenizer splits (`e-mail`) counts as its rarest part.
        """
        if not self.exists:
            return dict.fromkeys(terms, 0)
        with self._connect() as conn:
            return _frequencies(conn, terms)

    def compact(self) -> None:
        """Merge the full-text index's segments and give back the file's free pages."""
        if not self.exists:
            return
        with self._connect(writer=True) as conn:
            conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            conn.execute("VACUUM")

    def drop(self) -> None:
        """Remove the index's files."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _connect(self, *, writer: bool = False) -> Iterator[sqlite3.Connection]:
        # Autocommit mode: transactions are opened explicitly, and reads take no write lock.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < _VERSION:
                wait = CONVERSION_WAIT_S if writer else BUSY_TIMEOUT_S
                conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
                try:
                    _migrate(conn)
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
                    raise Unavailable(
                        f"the BM25 index {self.path.name} is being converted to this version's "
                        "format (once; minutes for a million chunks): try again shortly"
                    ) from exc
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            yield conn
        finally:
            conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    """Give a new file, or one an older version made, the current schema: `_SCHEMA` where its
    last object is missing, then the full-text index with tags (`_FULL_TEXT`). Writers wait
    meanwhile; a second connection waiting to do the same finds it done."""
    conn.create_function("lf_scale", 1, _scale_of, deterministic=True)
    conn.create_function("lf_ints", 1, _ints_of, deterministic=True)
    conn.execute("PRAGMA journal_mode = WAL")
    known = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [_LAST_OBJECT]).fetchone()
    if known is None:
        conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
    with _transaction(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] >= _VERSION:
            return
        if "tags" not in {row[1] for row in conn.execute("PRAGMA table_xinfo(chunks)")}:
            conn.execute(_ADD_TAGS)
        for statement in _FULL_TEXT:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_VERSION}")


def indexed_condition(where: Filter) -> tuple[str, tuple[str, ...]] | None:
    """A key of `INDEXED_KEYS` and the strings it must equal for a chunk to pass `where` (a
    test of `where`, or of one of the items of its top `$and`); None when there is none."""
    for item in where.items if isinstance(where, All) else (where,):
        if not isinstance(item, Condition) or item.key not in INDEXED_KEYS:
            continue
        if item.op not in ("$eq", "$in"):
            continue
        values = item.value if isinstance(item.value, tuple) else (item.value,)
        if all(isinstance(value, str) for value in values):
            return item.key, cast(tuple[str, ...], values)
    return None


def _indexed_test(
    indexed: tuple[str, tuple[str, ...]], column: str = "metadata"
) -> tuple[str, list[str]]:
    """SQL that the index on the key answers (the key is one of `INDEXED_KEYS`, never input).

    `json_extract` gives a JSON string as text, which equals no number: strings only, as the
    filter's rules want; the whole filter is tested beside it all the same.
    """
    key, values = indexed
    if key not in INDEXED_KEYS:
        raise ValueError(f"{key!r} has no index")
    marks = ", ".join("?" * len(values))
    return f"json_extract({column}, '$.{key}') IN ({marks})", list(values)


QUANTUM = 32_767
"""`_quantize`'s largest integer: int16's, kept symmetric."""


def _quantize(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float32 vector as int16 integers and a scale, their product within half the scale
    of each value (`dequantize`); the scale is NaN for a vector this cannot hold (one not
    finite, or so small its scale is below float32's normal range)."""
    wide = matrix.astype(np.float64)
    peak = np.abs(wide).max(axis=1) if wide.shape[1] else np.zeros(len(wide))
    scales = (peak / QUANTUM).astype(np.float32).astype(np.float64)
    tiny = float(np.finfo(np.float32).tiny)
    held = np.isfinite(peak) & ((scales >= tiny) | (peak == 0))
    scales[~held] = np.nan
    divisor = np.where(held & (scales > 0), scales, 1.0)[:, None]
    with np.errstate(invalid="ignore"):
        ints = np.rint(np.nan_to_num(wide) / divisor).clip(-QUANTUM, QUANTUM).astype(np.int16)
    return scales, ints


def dequantize(scales: np.ndarray, ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 vectors from `_quantize`'s, and how far each can be from the vector it was made
    from (the norm of the difference): half a scale a value, and float32's rounding."""
    vectors = ints.astype(np.float32)
    vectors *= scales.astype(np.float32)[:, None]
    # float32's rounding of each product: 2^-24 of a value under QUANTUM scales.
    return vectors, scales * np.sqrt(ints.shape[1]) * (0.5 + QUANTUM * 2.0**-24)


def _scale_of(blob: bytes) -> float | None:
    """SQL's `lf_scale`: the scale of a float32 blob's vector, NULL where it cannot be held."""
    scale = float(_quantize(np.frombuffer(blob, dtype=np.float32)[None, :])[0][0])
    return None if np.isnan(scale) else scale


def _ints_of(blob: bytes) -> bytes:
    """SQL's `lf_ints`: the int16 integers of a float32 blob's vector."""
    ints: np.ndarray = _quantize(np.frombuffer(blob, dtype=np.float32)[None, :])[1]
    return ints.tobytes()


def _total(conn: sqlite3.Connection) -> int:
    """How many chunks the index holds, from FTS5's own count (the first number of its
    "averages" record, which every write keeps): one row read, where count(*) reads them all
    (15 ms at 100,000 chunks, on every search)."""
    found = conn.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
    return _varint(found[0]) if found is not None else 0


def _varint(data: bytes) -> int:
    """The first of SQLite's variable-length integers in `data`: 7 bits a byte, most
    significant first, while the top bit is set; a ninth byte gives all its 8 bits."""
    value = 0
    for position, byte in enumerate(data[:9]):
        if position == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    raise ValueError("truncated varint")


def match_expression(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of `terms` in the chunks' text; quoting makes every word a
    literal, never syntax."""
    return f"text : ({_any_of(terms)})"


def tag(key: str, value: str) -> str:
    """The tag (`_TAGS`) of a chunk whose `key`, one of `INDEXED_KEYS`, is the string `value`.

    SQLite's JSON functions end a string at its first NUL character, and so does this, as the
    indexes on these keys do (`_indexed_test`).
    """
    return _TAG_PREFIXES[key] + value.split("\x00", 1)[0].encode().hex() + "0"


def _tags_expression(key: str, values: Sequence[str]) -> str:
    """An FTS5 query matching the chunks tagged with any of these values of `key`."""
    return f"tags : ({_any_of([tag(key, value) for value in values])})"


def _any_of(words: Sequence[str]) -> str:
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _frequencies(conn: sqlite3.Connection, terms: Sequence[str]) -> dict[str, int]:
    """How many chunks hold each of the query's words; a word the tokenizer splits counts at
    its rarest part (FTS5 matches it as a phrase of its parts, in at most that many chunks)."""
    stems = stems_of(terms)
    wanted = sorted({stem for parts in stems.values() for stem in parts})
    found: dict[str, int] = {}
    if wanted:
        marks = ", ".join("?" * len(wanted))
        sql = f"SELECT term, doc FROM chunks_terms WHERE col = 'text' AND term IN ({marks})"
        found = dict(conn.execute(sql, wanted))
    return {
        term: min((found.get(stem, 0) for stem in stems.get(term, ())), default=0) for term in terms
    }


def _ranking(
    terms: Sequence[str], frequencies: Mapping[str, int], *, top_k: int, where: Filter | None
) -> tuple[str, list[Any]]:
    """The SQL, and its parameters, of the `top_k` best chunks for these words.

    FTS5 scores every chunk that holds any of the words, about 1 us each: 0.1 s at 100,000
    matches, which a million chunks reach when a word is common. So when the words are in more
    than `CANDIDATE_POSTINGS` chunks in all, the candidates are the chunks holding one of the
    rarest words (at most that many chunks, and always the rarest word's): FTS5 finds them
    with an AND, which seeks through the other words' lists instead of reading them, and
    scores each on all the words. That AND counts the rare words twice (they are on both
    sides), so each candidate's score over the rare words alone, from a query of them, is
    taken off again: the score is FTS5's own bm25() of the whole query.

    What this leaves out is a chunk holding only commoner words: it scores less than the sum
    of their most (IDF times k1+1), often less than the last of the `top_k` kept.
    """
    full = match_expression(terms)
    if where is not None:
        # A test of an indexed key is also a term of the query, its tags: FTS5 reads only the
        # chunks holding both. A filter that is that test alone FTS5 then answers, ranking and
        # cutting before any chunk is read; any other decides on the chunks FTS5 gives.
        indexed = indexed_condition(where)
        match = full if indexed is None else f"{full} AND {_tags_expression(*indexed)}"
        if indexed is not None and isinstance(where, Condition):  # the tags are the filter
            return _SEARCH_ALL, [match, top_k]
        condition, where_params = to_sql(where, "c.metadata")
        return _SEARCH.format(where=condition), [match, *where_params, top_k]
    held = sorted((t for t in terms if frequencies[t] > 0), key=lambda t: (frequencies[t], t))
    if sum(frequencies[t] for t in held) <= CANDIDATE_POSTINGS:
        return _SEARCH_ALL, [full, top_k]
    rare = held[:1]
    for term in held[1:]:
        if sum(frequencies[t] for t in rare) + frequencies[term] > CANDIDATE_POSTINGS:
            break
        rare.append(term)
    if len(rare) == len(held):
        return _SEARCH_ALL, [full, top_k]
    among = match_expression(rare)
    return _SEARCH_AMONG, [among, f"({among}) AND ({full})", top_k]


def _most(frequencies: Mapping[str, int], total: int) -> float:
    """The highest BM25 any chunk could get for these words: the sum of their IDF times k1+1.

    The IDF is FTS5's (`log((N - n + 0.5) / (n + 0.5))`, at least 1e-6); a word the tokenizer
    splits counts at its rarest part; words no chunk holds cannot score and are left out.
    """
    most = sum(
        bm25_idf(total, min(frequency, total)) * (BM25_K1 + 1)
        for frequency in frequencies.values()
        if frequency > 0
    )
    return most or 1.0
