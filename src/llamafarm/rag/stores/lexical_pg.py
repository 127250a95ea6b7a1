"""PostgresLexicalIndex: the BM25 index of a store on a Chroma server, in the state database.

A store on a server is shared by every API replica and worker, so its lexical index cannot be a
file beside it. Each chunk is a row of `lexical_chunks` (`state/tables.py`): its text, its
metadata (JSONB) and its terms as FTS5's tokenizer stems them, with their counts (JSONB, under a
GIN index). A search finds the chunks holding any query term through that index and scores them
with FTS5's own `bm25()` formula on the table's statistics (chunks, tokens, chunks per term), so
it ranks as the embedded index does (hand-written: PostgreSQL's `ts_rank` is not BM25, and BM25
extensions are not in a stock server). Writes are plain transactions; concurrent writers of one
store need no lock of ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter, to_postgres
from llamafarm.rag.stores.lexical import (
    BM25_K1,
    LexicalHit,
    bm25_idf,
    query_stems,
    query_terms,
    term_counts,
)
from llamafarm.state.tables import LexicalChunk

BM25_B = 0.75
"""FTS5's bm25() document-length normalisation (its default)."""
_BATCH = 500

# The chunks holding any query term (through the GIN index), scored by FTS5's bm25() with the
# terms' IDFs and the average length given; the texts are joined for the `top_k` only.
_SEARCH = f"""
SELECT c.id, c.text, c.metadata, s.score
FROM (
    SELECT c.id, sum(
        t.idf * tf.tf * {BM25_K1 + 1}
        / (tf.tf + {BM25_K1} * ({1 - BM25_B} + {BM25_B} * c.length / :avgdl))
    ) AS score
    FROM lexical_chunks AS c
    JOIN unnest(CAST(:terms AS text[]), CAST(:idfs AS float8[])) AS t(term, idf)
        ON c.terms ? t.term
    CROSS JOIN LATERAL (SELECT CAST(c.terms ->> t.term AS float8) AS tf) AS tf
    WHERE c.store = :store AND c.terms ?| CAST(:terms AS text[]) AND {{where}}
    GROUP BY c.id
    ORDER BY score DESC, c.id
    LIMIT :top_k
) AS s
JOIN lexical_chunks AS c ON c.store = :store AND c.id = s.id
ORDER BY s.score DESC, s.id
"""
_STATS = """
SELECT count(*), coalesce(sum(length), 0) FROM lexical_chunks WHERE store = :store
"""
_FREQUENCIES = """
SELECT t.term, (SELECT count(*) FROM lexical_chunks AS c
                WHERE c.store = :store AND c.terms ? t.term)
FROM unnest(CAST(:terms AS text[])) AS t(term)
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
        rows = sorted(
            (
                {
                    "store": self.store,
                    "id": id_,
                    "text": _no_nul(text_),
                    "metadata": {k: _no_nul(v) for k, v in meta.items()},
                    "terms": terms,
                    "length": sum(terms.values()),
                }
                for id_, text_, meta, terms in zip(
                    ids, texts, metadatas, term_counts(texts), strict=True
                )
            ),
            key=lambda row: row["id"],
        )
        with self.engine.begin() as conn:
            for start in range(0, len(rows), _BATCH):
                statement = insert(LexicalChunk).values(rows[start : start + _BATCH])
                excluded = statement.excluded
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["store", "id"],
                        set_={
                            "text": excluded.text,
                            "metadata": excluded.metadata,
                            "terms": excluded.terms,
                            "length": excluded.length,
                        },
                    )
                )

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _BATCH):
                batch = list(ids[start : start + _BATCH])
                found = conn.execute(self._rows().where(LexicalChunk.id.in_(batch)))
                removed += int(found.rowcount)
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
            return int(conn.execute(statement).rowcount)

    def search(self, query: str, *, top_k: int, where: Filter | None = None) -> list[LexicalHit]:
        """As `LexicalIndex.search`: the `top_k` best among the chunks passing `where`, scored
        as a fraction of the most the query could score."""
        weights = query_stems(query_terms(query))
        if not weights or top_k <= 0:
            return []
        condition, params = to_postgres(where, "c.metadata") if where is not None else ("true", {})
        # One snapshot for the statistics and the matches they score.
        snapshot = self.engine.execution_options(isolation_level="REPEATABLE READ")
        with snapshot.connect() as conn, conn.begin():
            total, tokens = conn.execute(text(_STATS), {"store": self.store}).one()
            found = conn.execute(text(_FREQUENCIES), {"store": self.store, "terms": list(weights)})
            frequencies = {term: int(count) for term, count in found if count}
            if not frequencies:
                return []
            # Each term's IDF (times the query words it stands for); the most the query could
            # score is their sum times k1+1, as `lexical._most`.
            idfs = {
                term: weights[term] * bm25_idf(total, frequency)
                for term, frequency in frequencies.items()
            }
            params |= {
                "store": self.store,
                "terms": list(idfs),
                "idfs": list(idfs.values()),
                "avgdl": tokens / total,
                "top_k": top_k,
            }
            rows = conn.execute(text(_SEARCH.format(where=condition)), params).all()
        best = sum(idfs.values()) * (BM25_K1 + 1)
        return [
            LexicalHit(id=id_, text=text_, metadata=meta, score=min(score / best, 1.0))
            for id_, text_, meta, score in rows
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
            conn.execute(self._rows())

    def _rows(self) -> Any:
        return delete(LexicalChunk).where(LexicalChunk.store == self.store)


def _no_nul(value: Any) -> Any:
    """PostgreSQL text holds no NUL character (a PDF's text may)."""
    return value.replace("\x00", "") if isinstance(value, str) else value
