"""BM25 as SQLite FTS5 scores it, for both of the stores' BM25 indexes: the SQLite file
(`lexical.py`) and PostgreSQL's rows (`lexical_pg.py`). A query's words, the tokenizer's stems,
FTS5's IDF, and what an index gives and answers (`LexicalHit`, `Lexical`)."""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter

TOKENIZER = "porter unicode61 remove_diacritics 2"
BM25_K1 = 1.2
"""FTS5's bm25() term-frequency saturation (its default)."""
BM25_B = 0.75
"""FTS5's bm25() document-length normalisation (its default)."""
INDEXED_KEYS = ("dataset", "file_hash", "document_id")
"""Metadata keys a filter is fastest on: a test of one of them for equality (or `$in`) reads only
the chunks holding its values (`lexical.indexed_condition`), where any other filter tests every
chunk the query matches."""
TAG_TOKENS = len(INDEXED_KEYS)
"""Tokens every chunk's length counts beyond its words: the SQLite index keeps one tag a key of
`INDEXED_KEYS` in a second column, which FTS5's bm25() counts in a chunk's length. PostgreSQL's
index adds them too, so that both score alike."""
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


@dataclass(frozen=True)
class LexicalHit:
    id: str
    text: str
    metadata: dict[str, MetadataValue]
    score: float
    """BM25 as a fraction of the most the query could score, in [0, 1]."""


class Lexical(Protocol):
    """A store's BM25 index: `lexical.py`'s SQLite file, or rows in PostgreSQL
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


def query_terms(text: str) -> list[str]:
    """The distinct lowercase words of `text`, stopwords dropped unless nothing else is left."""
    words = list(dict.fromkeys(word.lower() for word in _WORD.findall(text)))
    kept = [word for word in words if word not in STOPWORDS]
    return (kept or words)[:MAX_QUERY_TERMS]


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
    for parts in stems_of(terms).values():
        for part in parts:
            weights[part] = weights.get(part, 0) + 1
    return weights


def bm25_idf(total: int, frequency: int) -> float:
    """FTS5's IDF of a term `frequency` of `total` chunks hold (at least 1e-6)."""
    return max(math.log((total - frequency + 0.5) / (frequency + 0.5)), 1e-6)


def stems_of(terms: Sequence[str]) -> dict[str, list[str]]:
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
