"""Keyword search alone: the store's BM25 index, no embedding (LlamaFarm's `BM25Retriever`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.retrieval.base import MAX_TOP_K, Search
from llamafarm.rag.stores.base import Hit


class KeywordConfig(StrictModel):
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    score_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Hits scoring below it are dropped."
    )


class BM25Strategy:
    """The chunks whose words best match the query's, scored as a fraction of the most the
    query could score (in [0, 1]); the query is never embedded."""

    def __init__(self, config: dict[str, Any]) -> None:
        settings = parse_config(KeywordConfig, config, what="BM25Retriever")
        self.default_top_k = settings.top_k
        self.threshold = settings.score_threshold

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        hits = search.keywords(query, top_k=top_k)
        if self.threshold is None:
            return hits
        return [hit for hit in hits if hit.score >= self.threshold]
