"""RerankedStrategy (LlamaFarm's): a first stage's candidates re-scored by weighted factors.

No model runs: the final score is a weighted mean of the similarity and three boosts in
[0, 1] read from the chunk — recency (a `timestamp`, `date` or `modified` in its metadata),
length (its characters over `length_normalization`) and metadata signals (`priority`, `type`,
`category`, `verified`) — so it stays in [0, 1]. Both of LlamaFarm's spellings of the
factors are read: `recency`/`length`/`metadata_boost` and `*_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dateutil import parser as dateparser
from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.documents import MetadataValue
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.retrieval.base import MAX_TOP_K, Retriever, Search
from llamafarm.rag.stores.base import Hit

DEFAULT_FACTORS = {"recency": 0.1, "length": 0.05, "metadata_boost": 0.2}
_ALIASES = {
    "similarity_weight": "similarity",
    "relevance_weight": "similarity",
    "recency_weight": "recency",
    "length_weight": "length",
    "metadata_weight": "metadata_boost",
}
_RECENCY_DAYS = ((1, 1.0), (7, 0.8), (30, 0.5), (90, 0.2))
_BOOSTS = {
    "priority": {"critical": 0.5, "high": 0.3, "medium": 0.1},
    "type": {"faq": 0.3, "troubleshooting": 0.3, "documentation": 0.2, "tutorial": 0.2},
    "category": {"important": 0.15, "featured": 0.15, "recommended": 0.15},
}


class FactorsConfig(StrictModel):
    strategy: str | None = Field(default=None, description="The first stage (default: basic).")
    initial_k: int = Field(default=30, ge=1, le=MAX_TOP_K)
    final_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    rerank_factors: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_FACTORS))
    length_normalization: float = Field(default=1000, gt=0)
    normalize_scores: bool = True
    distance_metric: str | None = None


class RerankedStrategy:
    def __init__(self, config: dict[str, Any], *, inner: Retriever | None = None) -> None:
        self.config = parse_config(FactorsConfig, config, what="RerankedStrategy")
        self.default_top_k = self.config.final_k or self.config.top_k
        self.weights = {"similarity": 1.0}
        for name, weight in self.config.rerank_factors.items():
            self.weights[_ALIASES.get(name, name)] = max(0.0, float(weight))
        self.inner = inner

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        first = self.inner or search.strategy(self.config.strategy)
        candidates = first.retrieve(search, query, top_k=max(self.config.initial_k, top_k))
        now = datetime.now(UTC)
        rescored = [
            Hit(id=h.id, text=h.text, metadata=h.metadata, score=self._score(h, now))
            for h in candidates
        ]
        return sorted(rescored, key=lambda hit: (-hit.score, hit.id))[:top_k]

    def _score(self, hit: Hit, now: datetime) -> float:
        factors = {
            "similarity": hit.score,
            "recency": _recency(hit.metadata, now),
            "length": min(len(hit.text) / self.config.length_normalization, 1.0),
            "metadata_boost": _metadata_boost(hit.metadata),
        }
        used = {k: w for k, w in self.weights.items() if k in factors}
        total = sum(used.values()) or 1.0
        return sum(w * factors[k] for k, w in used.items()) / total


def _recency(metadata: Mapping[str, MetadataValue], now: datetime) -> float:
    stamp = next((metadata[k] for k in ("timestamp", "date", "modified") if k in metadata), None)
    if not isinstance(stamp, str | int | float) or isinstance(stamp, bool):
        return 0.0
    try:
        when = (
            datetime.fromtimestamp(stamp, UTC)
            if isinstance(stamp, int | float)
            else dateparser.parse(stamp)
        )
    except (ValueError, OverflowError, OSError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = (now - when).days
    return next((boost for days, boost in _RECENCY_DAYS if age <= days), 0.0)


def _metadata_boost(metadata: Mapping[str, MetadataValue]) -> float:
    boost = 0.0
    for key, table in _BOOSTS.items():
        value = metadata.get(key)
        if isinstance(value, str):
            boost += table.get(value.lower(), 0.0)
    if metadata.get("verified") is True:
        boost += 0.1
    return min(boost, 1.0)
