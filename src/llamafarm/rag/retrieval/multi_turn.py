"""MultiTurnRAGStrategy (LlamaFarm's): a complex query split into sub-queries, each retrieved,
the results merged and optionally reranked by a cross-encoder.

LlamaFarm asks a chat model to decompose the query; here it is split without a model, at
sentence ends, question marks, semicolons and " and also " / " as well as " joins, which is
what the decomposition finds in the multi-part questions it is meant for. `model_name` and
`api_key` are accepted and warned about at validation.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.retrieval.base import MAX_TOP_K, Retriever, Search
from llamafarm.rag.retrieval.basic import BasicSimilarityStrategy, MetadataFilteredStrategy
from llamafarm.rag.retrieval.multi_query import retrieve_all, unique
from llamafarm.rag.stores.base import Hit

_SPLIT = re.compile(r"(?<=[?.!;])\s+|\s*;\s*|\s+(?:and also|as well as|and then)\s+", re.I)


class MultiTurnConfig(StrictModel):
    model_name: str | None = None
    api_key: str | None = None
    max_sub_queries: int = Field(default=3, ge=1, le=8)
    complexity_threshold: int = Field(default=50, ge=0)
    min_query_length: int = Field(default=20, ge=0)
    base_strategy: Literal["BasicSimilarityStrategy", "MetadataFilteredStrategy"] = (
        "BasicSimilarityStrategy"
    )
    base_strategy_config: dict[str, Any] = Field(default_factory=dict)
    sub_query_top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    final_top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    enable_reranking: bool = False
    reranker_strategy: str = "CrossEncoderRerankedStrategy"
    reranker_config: dict[str, Any] = Field(default_factory=dict)
    dedup_similarity_threshold: float = Field(default=0.95, ge=0, le=1)
    max_workers: int = Field(default=3, ge=1, le=8)


class MultiTurnRAGStrategy:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = parse_config(MultiTurnConfig, config, what="MultiTurnRAGStrategy")
        self.default_top_k = self.config.final_top_k
        base = dict(self.config.base_strategy_config)
        self.base: Retriever = (
            MetadataFilteredStrategy(base)
            if self.config.base_strategy == "MetadataFilteredStrategy"
            else BasicSimilarityStrategy(base)
        )
        self.rerank = dict(self.config.reranker_config) if self.config.enable_reranking else None

    def sub_queries(self, query: str) -> list[str]:
        """The query's parts when it is long enough to be complex, else the query alone."""
        if len(query) < max(self.config.complexity_threshold, self.config.min_query_length):
            return [query]
        parts = [p.strip(" ,") for p in _SPLIT.split(query) if p and len(p.strip(" ,")) > 3]
        return unique([query, *parts])[: self.config.max_sub_queries + 1]

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        queries = self.sub_queries(query)
        each = max(self.config.sub_query_top_k, top_k)
        hits = retrieve_all(search, self.base, queries, top_k=each)
        if self.rerank is None or not hits:
            return hits[:top_k]
        scores = search.reranker(self.rerank).score(query, [hit.text for hit in hits])
        rescored = [
            Hit(id=h.id, text=h.text, metadata=h.metadata, score=s)
            for h, s in zip(hits, scores, strict=True)
        ]
        return sorted(rescored, key=lambda hit: (-hit.score, hit.id))[:top_k]
