"""Vector similarity, with or without metadata filters pushed into the store."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.errors import BadRequest, ConfigInvalid
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.filters import Filter, parse_filters
from llamafarm.rag.retrieval.base import MAX_TOP_K, Search
from llamafarm.rag.stores.base import DistanceMetric, Hit


class BasicConfig(StrictModel):
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    distance_metric: DistanceMetric | None = None
    score_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Hits scoring below it are dropped."
    )


class FilteredConfig(BasicConfig):
    filters: dict[str, Any] = Field(default_factory=dict)


class BasicSimilarityStrategy:
    """The nearest chunks to the query's embedding."""

    def __init__(self, config: dict[str, Any]) -> None:
        settings = parse_config(BasicConfig, config, what="BasicSimilarityStrategy")
        self.default_top_k = settings.top_k
        self.metric = settings.distance_metric
        self.threshold = settings.score_threshold
        self.where: Filter | None = None

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        hits = search.nearest(query, top_k=top_k, where=self.where, metric=self.metric)
        if self.threshold is None:
            return hits
        return [hit for hit in hits if hit.score >= self.threshold]


class MetadataFilteredStrategy(BasicSimilarityStrategy):
    """Nearest chunks among those whose metadata passes the configured filters."""

    def __init__(self, config: dict[str, Any]) -> None:
        settings = parse_config(FilteredConfig, config, what="MetadataFilteredStrategy")
        super().__init__(settings.model_dump(exclude={"filters"}))
        try:
            self.where = parse_filters(settings.filters)
        except BadRequest as exc:
            raise ConfigInvalid(f"MetadataFilteredStrategy config: filters: {exc.detail}") from exc
