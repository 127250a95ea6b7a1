"""Retrieval strategies: one module per family, chosen by a strategy's `type`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llamafarm.config.models import Database, RetrievalStrategy
from llamafarm.errors import BadRequest, ConfigInvalid
from llamafarm.rag.retrieval.base import DEFAULT_TOP_K, MAX_TOP_K, Retriever, Search
from llamafarm.rag.retrieval.basic import BasicSimilarityStrategy, MetadataFilteredStrategy
from llamafarm.rag.retrieval.factors import RerankedStrategy
from llamafarm.rag.retrieval.hybrid import HybridUniversalStrategy
from llamafarm.rag.retrieval.lexical import BM25Strategy
from llamafarm.rag.retrieval.multi_query import MultiQueryStrategy, retrieve_all
from llamafarm.rag.retrieval.multi_turn import MultiTurnRAGStrategy
from llamafarm.rag.retrieval.reranked import CrossEncoderRerankedStrategy
from llamafarm.registry import Registry

__all__ = [
    "ALIASES",
    "BUILTIN",
    "DEFAULT_TOP_K",
    "MAX_TOP_K",
    "RETRIEVERS",
    "UNHONOURED",
    "Retriever",
    "Search",
    "Strategies",
    "canonical",
    "retrieve_all",
]

RETRIEVERS: Registry[Callable[[dict[str, Any]], Retriever]] = Registry("retrieval strategy")
"""Strategy classes by the `type` a retrieval strategy names; each takes its `config`."""
RETRIEVERS.register("BasicSimilarityStrategy", BasicSimilarityStrategy)
RETRIEVERS.register("MetadataFilteredStrategy", MetadataFilteredStrategy)
RETRIEVERS.register("HybridUniversalStrategy", HybridUniversalStrategy)
RETRIEVERS.register("MultiQueryStrategy", MultiQueryStrategy)
RETRIEVERS.register("CrossEncoderRerankedStrategy", CrossEncoderRerankedStrategy)
RETRIEVERS.register("RerankedStrategy", RerankedStrategy)
RETRIEVERS.register("MultiTurnRAGStrategy", MultiTurnRAGStrategy)
RETRIEVERS.register("BM25Retriever", BM25Strategy)

ALIASES = {
    "VectorRetriever": "BasicSimilarityStrategy",
    "HybridRetriever": "HybridUniversalStrategy",
    "RerankedRetriever": "RerankedStrategy",
}
"""LlamaFarm's generic retriever names (in its schema, with no implementation of their own)
→ the strategy that does the same here; `RerankedRetriever` is the model-free reranker."""
for _alias, _target in ALIASES.items():
    RETRIEVERS.register(_alias, RETRIEVERS[_target])


def canonical(kind: str) -> str:
    """The strategy type an alias stands for (`VectorRetriever` → `BasicSimilarityStrategy`)."""
    return ALIASES.get(kind, kind)


UNHONOURED: dict[str, frozenset[str]] = {
    "MetadataFilteredStrategy": frozenset({"filter_mode", "fallback_multiplier"}),
    "MultiQueryStrategy": frozenset({"aggregation_method", "query_weights"}),
    "HybridUniversalStrategy": frozenset({"strategies", "combination_method"}),
    "CrossEncoderRerankedStrategy": frozenset(
        {"base_strategy", "base_strategy_config", "relevance_threshold"}
    ),
    "RerankedStrategy": frozenset({"normalize_scores", "distance_metric"}),
    "MultiTurnRAGStrategy": frozenset({"model_name", "api_key", "dedup_similarity_threshold"}),
    "BM25Retriever": frozenset({"stop_words"}),
}
"""LlamaFarm config keys each type accepts but does not act on; warned about at validation
(filters always run in the store, several queries keep each chunk's best score, the multi-turn
split needs no model). Those a strategy's own config does not declare are dropped here."""
_RENAMED: dict[str, dict[str, str]] = {
    "HybridUniversalStrategy": {"final_k": "top_k", "fusion_method": "fusion"}
}
"""LlamaFarm's keys → ours; `fusion_method` (`rrf`, `weighted`) is in its strategy docs."""


def llamafarm_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A strategy's `config` with LlamaFarm's keys translated or dropped for its factory."""
    kind = canonical(kind)
    renamed = _RENAMED.get(kind, {})
    kept = {renamed.get(k, k): v for k, v in config.items()}
    if kind in ("RerankedStrategy", "MultiTurnRAGStrategy"):
        return kept  # they declare LlamaFarm's keys themselves
    return {k: v for k, v in kept.items() if k not in UNHONOURED.get(kind, frozenset())}


BUILTIN = {
    "basic": RetrievalStrategy(name="basic", type="BasicSimilarityStrategy"),
    "hybrid": RetrievalStrategy(name="hybrid", type="HybridUniversalStrategy"),
    "multi_query": RetrievalStrategy(name="multi_query", type="MultiQueryStrategy"),
}
"""Names every database answers to when none of its own strategies has the name."""

_PLAIN = RetrievalStrategy(name="basic", type="BasicSimilarityStrategy")
_WRAPPERS = {"MultiQueryStrategy", "CrossEncoderRerankedStrategy", "RerankedStrategy"}
"""Types that run another strategy of the database (`config.strategy`)."""


class Strategies:
    """The retrieval strategies of one database, built once each, by name."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._built: dict[tuple[str, bool], Retriever] = {}
        self._configured = {s.name: s for s in database.retrieval_strategies}

    @property
    def names(self) -> list[str]:
        return [*self._configured, *(n for n in BUILTIN if n not in self._configured)]

    @property
    def default_name(self) -> str:
        chosen = self.database.default_retrieval_strategy
        if chosen is None:
            chosen = next((s.name for s in self.database.retrieval_strategies if s.default), None)
        if chosen is None and self.database.retrieval_strategies:
            chosen = self.database.retrieval_strategies[0].name
        return chosen or "basic"

    def spec(self, name: str) -> RetrievalStrategy:
        found = self._configured.get(name) or BUILTIN.get(name)
        if found is None:
            raise BadRequest(
                f"Unknown retrieval_strategy {name!r} for database {self.database.name!r} "
                f"(valid: {', '.join(self.names)})"
            )
        return found

    def get(self, name: str | None, *, inner: bool = False) -> Retriever:
        """A strategy by name; None is the database default.

        For an inner strategy (what a multi-query or reranked strategy runs) whose default
        itself runs other strategies, None is the built-in vector search: never the same name,
        which a configured strategy may have taken, so no chain can loop.
        """
        spec = self.spec(self.default_name if name is None else name)
        if name is None and inner and canonical(spec.type) in _WRAPPERS:
            spec = _PLAIN
        key = (spec.name, spec is _PLAIN)
        if key not in self._built:
            factory = RETRIEVERS.find(spec.type, owner=spec.name)
            self._built[key] = factory(llamafarm_config(spec.type, dict(spec.config)))
        return self._built[key]

    def check(self, name: str | None = None) -> None:
        """Build a strategy (all configured ones when None) and follow what it runs.

        ConfigInvalid for a bad config, an unknown reference or a cycle.
        """
        names = [s.name for s in self.database.retrieval_strategies] if name is None else [name]
        for start in names:
            chain = [start]
            while True:
                spec = self.spec(chain[-1])
                self.get(spec.name)
                wraps = canonical(spec.type) in _WRAPPERS
                target = spec.config.get("strategy") if wraps else None
                if target is None:
                    break
                if target in chain:
                    cycle = " -> ".join([*chain, target])
                    raise ConfigInvalid(f"retrieval strategies refer to each other: {cycle}")
                if target not in self._configured and target not in BUILTIN:
                    raise ConfigInvalid(
                        f"retrieval strategy {spec.name!r}: unknown strategy {target!r} "
                        f"(valid: {', '.join(self.names)})"
                    )
                chain.append(target)
