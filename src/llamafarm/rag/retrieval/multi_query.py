"""Several queries run concurrently through one strategy, merged by chunk and capped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.retrieval.base import MAX_TOP_K, Retriever, Search
from llamafarm.rag.stores.base import Hit
from llamafarm.rag.stores.bm25 import STOPWORDS

MAX_QUERIES = 8
_WORD = re.compile(r"\w+")


class MultiQueryConfig(StrictModel):
    strategy: str | None = Field(
        default=None, description="The strategy each query runs through (default: the database's)."
    )
    queries: list[str] = Field(default_factory=list, max_length=MAX_QUERIES)
    num_queries: int = Field(default=3, ge=1, le=MAX_QUERIES)
    expand: bool = True
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)


class MultiQueryStrategy:
    def __init__(self, config: dict[str, Any], *, inner: Retriever | None = None) -> None:
        self.config = parse_config(MultiQueryConfig, config, what="MultiQueryStrategy")
        self.default_top_k = self.config.top_k
        self.inner = inner
        """Runs each query; None: the configured `strategy` of the database."""

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        queries = [query, *self.config.queries]
        if self.config.expand:
            queries += expand(search, query)
        inner = self.inner or search.strategy(self.config.strategy)
        return retrieve_all(search, inner, unique(queries)[: self.config.num_queries], top_k=top_k)


def retrieve_all(
    search: Search, strategy: Retriever, queries: Sequence[str], *, top_k: int
) -> list[Hit]:
    """Each query through `strategy` at once; a chunk found by several keeps its best score."""
    with ThreadPoolExecutor(max_workers=min(len(queries), MAX_QUERIES)) as pool:
        runs = list(pool.map(lambda q: strategy.retrieve(search, q, top_k=top_k), queries))
    best: dict[str, Hit] = {}
    for hit in (hit for run in runs for hit in run):
        if hit.id not in best or hit.score > best[hit.id].score:
            best[hit.id] = hit
    return sorted(best.values(), key=lambda hit: (-hit.score, hit.id))[:top_k]


def expand(search: Search, query: str) -> list[str]:
    """Keyword variants of a query, made without a model.

    The query's content words (stop words dropped), then its rarer half by document
    frequency in the store's lexical index: the words that most narrow the search.
    """
    words = [w for w in _WORD.findall(query) if w.lower() not in STOPWORDS]
    if len(words) < 2:
        return []
    frequencies, _ = search.store.document_frequencies([w.lower() for w in words])
    rare = sorted(words, key=lambda w: frequencies.get(w.lower(), 0))[: max(1, len(words) // 2)]
    return [" ".join(words), " ".join(w for w in words if w in rare)]


def unique(queries: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for text in queries:
        key = " ".join(text.split()).lower()
        if key and key not in seen:
            seen[key] = text
    return list(seen.values())
