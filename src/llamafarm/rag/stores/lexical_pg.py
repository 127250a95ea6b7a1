"""PostgresLexicalIndex: the BM25 index of a store on a Chroma server, in the state database.

A store on a server is shared by every API replica and worker, so its lexical index cannot be a
file beside it. Each chunk is a row of `lexical_chunks` (`state/tables.py`): its text, its
metadata (JSONB, for filters) and its length; each of its terms, as FTS5's tokenizer stems them,
is a row of `lexical_postings` with its count; the store's chunks and tokens are kept in its
row of `lexical_stores`. A search reads only the postings of its terms (through their (store,
term) index), counts each term's chunks from them, and sums FTS5's own `bm25()` formula per chunk
in SQL, so it ranks as the embedded index does; it reads the chunk rows for a filter and the
`top_k` texts alone (hand-written: PostgreSQL's `ts_rank` is not BM25, and BM25 extensions are
not in a stock server). Writes are transactions; the writers of one store take turns on its
`lexical_stores` row, so its counts stay exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter, to_postgres
from llamafarm.rag.stores.bm25 import (
    BM25_B,
    BM25_K1,
    TAG_TOKENS,
    LexicalHit,
    query_stems,
    query_terms,
    term_counts,
)
from llamafarm.state.tables import LexicalChunk, LexicalPosting, LexicalStore

_BATCH = 500

# One statement, so one snapshot for the statistics and the matches they score: the store's
# chunks and tokens (its `lexical_stores` row); the postings of the query terms, read once
# (through their (store, term) index); each term's chunks (a count of its postings) and so its
# FTS5 IDF (times the query words it stands for, `:weights`); the postings summed per chunk by
# FTS5's bm25(), a chunk's length counting the tags the SQLite index adds (`TAG_TOKENS`). The
# chunk rows are read for a filter (`join`) and for the texts of the `top_k`; `best` is the IDFs'
# sum, the most the query could score over k1+1 (as `lexical._most`).
_SEARCH = f"""
WITH stats AS (
    SELECT CAST(chunks AS float8) AS total, CAST(tokens AS float8) AS tokens
    FROM lexical_stores WHERE store = :store AND chunks > 0
), postings AS MATERIALIZED (
    SELECT term, chunk_id, tf, length FROM lexical_postings
    WHERE store = :store AND term = ANY(CAST(:terms AS text[]))
), frequencies AS (
    SELECT term, CAST(count(*) AS float8) AS frequency FROM postings GROUP BY term
), idfs AS (
    SELECT t.term, t.weight * greatest(
        ln((stats.total - f.frequency + 0.5) / (f.frequency + 0.5)), 1e-6
    ) AS idf
    FROM unnest(CAST(:terms AS text[]), CAST(:weights AS float8[])) AS t(term, weight)
    JOIN frequencies AS f ON f.term = t.term
    CROSS JOIN stats
), scores AS (
    SELECT p.chunk_id AS id, sum(
        t.idf * p.tf * {BM25_K1 + 1}
        / (p.tf + {BM25_K1} * ({1 - BM25_B} + {BM25_B} * (p.length + {TAG_TOKENS}) / stats.avgdl))
    ) AS score
    FROM idfs AS t
    JOIN postings AS p ON p.term = t.term
    CROSS JOIN (SELECT tokens / total + {TAG_TOKENS} AS avgdl FROM stats) AS stats
    {{join}}
    GROUP BY p.chunk_id
    ORDER BY score DESC, p.chunk_id
    LIMIT :top_k
)
SELECT c.id, c.text, c.metadata, s.score, (SELECT sum(idf) FROM idfs) AS best
FROM scores AS s
JOIN lexical_chunks AS c ON c.store = :store AND c.id = s.id
ORDER BY s.score DESC, s.id
"""
_FILTER = """
    JOIN lexical_chunks AS f ON f.store = :store AND f.id = p.chunk_id
    WHERE {where}
"""
_FREQUENCIES = """
SELECT term, count(*) FROM lexical_postings
WHERE store = :store AND term = ANY(CAST(:terms AS text[]))
GROUP BY term
"""
# The store's row, locked until the transaction ends: the writers of a store take turns, so the
# chunk and token counts each adds to it are exact.
_LOCK_STORE = """
INSERT INTO lexical_stores (store, chunks, tokens) VALUES (:store, 0, 0)
ON CONFLICT (store) DO UPDATE SET store = excluded.store
"""
_OLD = """
SELECT count(*), coalesce(sum(length), 0) FROM lexical_chunks
WHERE store = :store AND id = ANY(CAST(:ids AS text[]))
"""
_ADD = """
UPDATE lexical_stores SET chunks = chunks + :chunks, tokens = tokens + :tokens
WHERE store = :store
"""
_DROP_POSTINGS = """
DELETE FROM lexical_postings WHERE store = :store AND chunk_id = ANY(CAST(:ids AS text[]))
"""


class PostgresLexicalIndex:
    """The BM25 index of one store (`store`: its collection's name on the server)."""

    def __init__(self, engine: Engine, *, store: str) -> None:
        self.engine = engine
        self.store = store

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        if not len(ids) == len(texts) == len(metadatas):
            raise ValueError("upsert: ids, texts and metadatas differ in length")
        # In id order, so two writers of overlapping chunks lock rows in one order.
        chunks = sorted(
            zip(ids, texts, metadatas, term_counts(texts), strict=True), key=lambda c: c[0]
        )
        rows = [
            {
                "store": self.store,
                "id": id_,
                "text": _no_nul(text_),
                "metadata": {k: _no_nul(v) for k, v in meta.items()},
                "length": sum(terms.values()),
            }
            for id_, text_, meta, terms in chunks
        ]
        postings = [
            {
                "store": self.store,
                "chunk_id": id_,
                "term": term,
                "tf": tf,
                "length": row["length"],
            }
            for (id_, _, _, terms), row in zip(chunks, rows, strict=True)
            for term, tf in terms.items()
        ]
        with self.engine.begin() as conn:
            self._lock(conn)
            for start in range(0, len(rows), _BATCH):
                batch = rows[start : start + _BATCH]
                ids_ = [row["id"] for row in batch]
                old, old_tokens = conn.execute(text(_OLD), {"store": self.store, "ids": ids_}).one()
                tokens = sum(row["length"] for row in batch) - old_tokens
                self._add(conn, len(batch) - old, tokens)
                statement = insert(LexicalChunk).values(batch)
                excluded = statement.excluded
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["store", "id"],
                        set_={
                            "text": excluded.text,
                            "metadata": excluded.metadata,
                            "length": excluded.length,
                        },
                    )
                )
                # A chunk written again: its old terms go.
                conn.execute(text(_DROP_POSTINGS), {"store": self.store, "ids": ids_})
            if postings:
                conn.execute(insert(LexicalPosting), postings)

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self.engine.begin() as conn:
            self._lock(conn)
            for start in range(0, len(ids), _BATCH):
                batch = list(ids[start : start + _BATCH])
                removed += self._remove(conn, self._rows().where(LexicalChunk.id.in_(batch)))
        return removed

    def delete_where(self, where: Mapping[str, MetadataValue], *, keep: Sequence[str] = ()) -> int:
        """Remove the chunks whose metadata holds `where` (JSONB containment, under its GIN
        index), except those in `keep`."""
        if not where:
            return 0
        contains = text("metadata @> CAST(:where AS jsonb)").bindparams(
            where=json.dumps(dict(where), allow_nan=False)
        )
        statement = self._rows().where(contains)
        if keep:
            statement = statement.where(LexicalChunk.id.not_in(list(keep)))
        with self.engine.begin() as conn:
            self._lock(conn)
            return self._remove(conn, statement)

    def search(self, query: str, *, top_k: int, where: Filter | None = None) -> list[LexicalHit]:
        """As `LexicalIndex.search`: the `top_k` best among the chunks passing `where`, scored
        as a fraction of the most the query could score."""
        weights = query_stems(query_terms(query))
        if not weights or top_k <= 0:
            return []
        join = ""
        params: dict[str, Any] = {}
        if where is not None:
            condition, params = to_postgres(where, "f.metadata")
            join = _FILTER.format(where=condition)
        params |= {
            "store": self.store,
            "terms": list(weights),
            "weights": [float(w) for w in weights.values()],
            "top_k": top_k,
        }
        with self.engine.connect() as conn:
            rows = conn.execute(text(_SEARCH.format(join=join)), params).all()
        return [
            LexicalHit(
                id=id_, text=text_, metadata=meta, score=min(score / (best * (BM25_K1 + 1)), 1.0)
            )
            for id_, text_, meta, score, best in rows
        ]

    def count(self) -> int:
        with self.engine.connect() as conn:
            statement = select(func.count()).where(LexicalChunk.store == self.store)
            return int(conn.execute(statement).scalar_one())

    def term_stats(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each term (as the index stems it); a term the tokenizer splits
        counts as its rarest part."""
        stems = {term: list(query_stems([term])) for term in dict.fromkeys(terms)}
        wanted = sorted({stem for parts in stems.values() for stem in parts})
        frequency: dict[str, int] = {}
        if wanted:
            with self.engine.connect() as conn:
                found = conn.execute(text(_FREQUENCIES), {"store": self.store, "terms": wanted})
                frequency = {term: int(count) for term, count in found}
        return {
            term: min((frequency.get(s, 0) for s in stems.get(term, ())), default=0)
            for term in terms
        }

    def drop(self) -> None:
        with self.engine.begin() as conn:
            self._lock(conn)
            conn.execute(self._rows())
            conn.execute(delete(LexicalStore).where(LexicalStore.store == self.store))

    def _rows(self) -> Any:
        return delete(LexicalChunk).where(LexicalChunk.store == self.store)

    def _lock(self, conn: Connection) -> None:
        conn.execute(text(_LOCK_STORE), {"store": self.store})

    def _add(self, conn: Connection, chunks: int, tokens: int) -> None:
        conn.execute(text(_ADD), {"store": self.store, "chunks": chunks, "tokens": tokens})

    def _remove(self, conn: Connection, statement: Any) -> int:
        """Run a delete of chunk rows (their postings cascade); subtract them from the counts."""
        lengths = conn.execute(statement.returning(LexicalChunk.length)).scalars().all()
        self._add(conn, -len(lengths), -sum(lengths))
        return len(lengths)


def _no_nul(value: Any) -> Any:
    """PostgreSQL text holds no NUL character (a PDF's text may)."""
    return value.replace("\x00", "") if isinstance(value, str) else value
