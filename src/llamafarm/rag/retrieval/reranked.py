"""A first-stage strategy's candidates, re-ordered by a cross-encoder (local or remote)."""

from __future__ import annotations

from typing import Any

from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.rerankers import RerankerConfig
from llamafarm.rag.retrieval.base import Retriever, Search
from llamafarm.rag.stores.base import Hit

STAGES = {"initial_k", "final_k", "strategy"}
"""Keys of the strategy's config that are not the reranker's."""


class CrossEncoderRerankedStrategy:
    def __init__(self, config: dict[str, Any], *, inner: Retriever | None = None) -> None:
        self.settings = parse_config(RerankerConfig, config, what="CrossEncoderRerankedStrategy")
        self.model = self.settings.model_dump(exclude=STAGES, exclude_none=True)
        self.default_top_k = self.settings.final_k
        self.inner = inner
        """The first stage; None: the configured `strategy` of the database."""

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        reranker = search.reranker(self.model)
        first = self.inner or search.strategy(self.settings.strategy)
        candidates = first.retrieve(search, query, top_k=max(self.settings.initial_k, top_k))
        if not candidates:
            reranker.check()  # a missing model is an error even when nothing matched
        scores = reranker.score(query, [hit.text for hit in candidates])
        rescored = [
            Hit(id=h.id, text=h.text, metadata=h.metadata, score=s)
            for h, s in zip(candidates, scores, strict=True)
        ]
        return sorted(rescored, key=lambda hit: (-hit.score, hit.id))[:top_k]
