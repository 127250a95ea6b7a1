"""The retrieval strategy protocol and the per-query context strategies search through."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.filters import Filter, combine
from llamafarm.rag.rerankers import Reranker
from llamafarm.rag.stores.base import DistanceMetric, Hit, VectorStore

DEFAULT_TOP_K = 5
MAX_TOP_K = 1000


class Retriever(Protocol):
    default_top_k: int | None
    """The strategy's configured `top_k`, used when a query gives none."""

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        """The best `top_k` chunks for `query`, best first, scores in [0, 1]."""
        ...


@dataclass
class Search:
    """One query's view of a database: its store, embedder, filters and sibling strategies."""

    store: VectorStore
    embedder: Embedder
    filters: Filter | None = None
    distance_metric: DistanceMetric | None = None
    hybrid_alpha: float | None = None
    strategy: Callable[[str | None], Retriever] = field(repr=False, default=lambda _: _missing())
    """A strategy of the same database by name (None: the database's default)."""
    reranker: Callable[[Mapping[str, Any]], Reranker] = field(
        repr=False, default=lambda _: _missing()
    )
    pool: Executor | None = field(repr=False, default=None)
    """Threads for a strategy's work beside the query's own (the process's); None: inline."""
    _vectors: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def vector(self, text: str) -> list[float]:
        """The query's embedding, computed once however many strategies ask for it."""
        with self._lock:
            cached = self._vectors.get(text)
        if cached is None:
            cached = self.embedder.embed([text])[0]
            with self._lock:
                self._vectors[text] = cached
        return cached

    def nearest(
        self,
        text: str,
        *,
        top_k: int,
        where: Filter | None = None,
        metric: DistanceMetric | None = None,
        texts: bool = True,
    ) -> list[Hit]:
        """The nearest chunks; `texts=False`: maybe without texts (`VectorStore.search`)."""
        return self.store.search(
            self.vector(text),
            top_k=top_k,
            where=combine(self.filters, where),
            metric=self.distance_metric or metric,
            texts=texts,
        )

    def keywords(self, text: str, *, top_k: int, where: Filter | None = None) -> list[Hit]:
        return self.store.keyword_search(text, top_k=top_k, where=combine(self.filters, where))


def _missing() -> Any:
    raise RuntimeError("this Search was built without strategies or rerankers")
