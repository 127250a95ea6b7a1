"""Every component a project config names, checked when the config is saved or loaded.

A LlamaFarm `llamafarm.yaml` names parsers, extractors, stores, embedders and retrieval
strategies by LlamaFarm's type names. `check_components` maps each to ours: a type we cannot
provide fails here, with the config path and the names we know, never later file by file; a
config key we accept but cannot honour comes back as a warning. The ProjectStore receives this
function from the app's lifespan and the worker's start (it sits below ingest and rag).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from llamafarm.config.models import Database, DataProcessingStrategy, ProjectConfig
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.chunking import APPROXIMATE, check_options
from llamafarm.ingest.extractors import EXTRACTORS, build
from llamafarm.ingest.extractors.patterns import DEFAULT_ENTITY_TYPES, PATTERN_ENTITIES
from llamafarm.ingest.parsers import CHUNK_KEYS, OPTIONS, PARSERS, parser_class
from llamafarm.rag.embedders import EMBEDDERS, create_embedder
from llamafarm.rag.embedders import UNHONOURED as EMBEDDER_KEYS
from llamafarm.rag.retrieval import RETRIEVERS, Strategies, canonical
from llamafarm.rag.retrieval import UNHONOURED as RETRIEVAL_KEYS
from llamafarm.rag.stores import STORES
from llamafarm.rag.stores import UNHONOURED as STORE_KEYS
from llamafarm.registry import Registry

__all__ = ["UNAVAILABLE", "check_components"]

UNAVAILABLE: dict[str, str] = {
    "FAISSStore": "an in-memory FAISS index; use ChromaStore or QdrantStore, which keep the "
    "index in the project's folder",
    "PineconeStore": "a hosted cloud service, which a local-first server does not call; use "
    "QdrantStore with a url for a remote store",
    "GraphRetriever": "needs a knowledge graph, which nothing here builds (LlamaFarm 0.0.27 "
    "names it but has no implementation)",
    "ElasticRetriever": "needs an Elasticsearch server; HybridUniversalStrategy gives BM25 and "
    "vector search from the project's own store (LlamaFarm 0.0.27 has no implementation)",
}
"""LlamaFarm 0.0.27 type names we cannot provide, with why; a config naming one fails at
validation with this reason and the names we know."""

_NOWHERE = Path("/nonexistent/llamafarm-check")
"""Stores are built to check their config only; nothing is opened or written."""


def check_components(config: ProjectConfig) -> list[str]:
    """Warnings for what the config asks and we cannot honour; ConfigInvalid for a component
    type we do not have or a component config that cannot work."""
    warnings: list[str] = []
    if config.rag is None:
        return warnings
    for i, strategy in enumerate(config.rag.data_processing_strategies):
        warnings += _processing(f"rag.data_processing_strategies[{i}]", strategy)
    for i, database in enumerate(config.rag.databases):
        warnings += _database(f"rag.databases[{i}]", database)
    return warnings


def _processing(where: str, strategy: DataProcessingStrategy) -> list[str]:
    warnings: list[str] = []
    for j, parser in enumerate(strategy.parsers):
        path = f"{where}.parsers[{j}]"
        cls = _known(PARSERS, parser.type, f"{path}.type", parser_class(parser.type))
        if parser.fallback_parser:
            _known(
                PARSERS,
                parser.fallback_parser,
                f"{path}.fallback_parser",
                parser_class(parser.fallback_parser),
            )
        _checked(f"{path}.config", partial(check_options, parser.config))
        honoured = CHUNK_KEYS | OPTIONS.get(cls, frozenset())
        warnings += _ignored(f"{path}.config", parser.config, honoured, parser.type)
        if parser.config.get("chunk_strategy") in APPROXIMATE:
            warnings.append(
                f"{path}.config.chunk_strategy: {parser.config['chunk_strategy']!r} needs a "
                "model or tokenizer we do not run; the nearest splitting by text is used"
            )
    for j, extractor in enumerate(strategy.extractors):
        path = f"{where}.extractors[{j}]"
        cls = _known(EXTRACTORS, extractor.type, f"{path}.type", EXTRACTORS.get(extractor.type))
        _checked(f"{path}.config", partial(build, extractor.type, extractor.config))
        warnings += _ignored(f"{path}.config", extractor.config, cls.options, extractor.type)
        warnings += _extractor_notes(path, extractor.type, extractor.config)
    return warnings


def _extractor_notes(path: str, kind: str, config: Mapping[str, Any]) -> list[str]:
    """What an extractor does differently from LlamaFarm's although its keys are honoured."""
    if kind == "EntityExtractor":
        asked = config.get("entity_types", DEFAULT_ENTITY_TYPES)
        missing = [t for t in asked if isinstance(t, str) and t.upper() not in PATTERN_ENTITIES]
        if missing:
            return [
                f"{path}: entity types {', '.join(missing)} need a NER model we do not run; "
                f"found by pattern: {', '.join(PATTERN_ENTITIES)}"
            ]
    if kind in ("KeywordExtractor", "RAKEExtractor") and config.get("algorithm") == "textrank":
        return [f"{path}.config.algorithm: 'textrank' is not implemented; RAKE is used"]
    if kind == "SummaryExtractor" and config.get("algorithm") == "lsa":
        return [f"{path}.config.algorithm: 'lsa' is not implemented; textrank is used"]
    if kind == "UniversalExtractor" and config.get("use_gliner") is True:
        return [
            f"{path}.config.use_gliner: needs a GLiNER model we do not run; entities are found "
            f"by pattern: {', '.join(PATTERN_ENTITIES)}"
        ]
    return []


def _database(where: str, database: Database) -> list[str]:
    store = _known(STORES, database.type, f"{where}.type", STORES.get(database.type))
    _checked(
        f"{where}.config",
        lambda: store.from_config(path=_NOWHERE, database=database.name, config=database.config),
    )
    warnings = _ignored(
        f"{where}.config", database.config, None, database.type, STORE_KEYS.get(database.type)
    )
    for j, embedding in enumerate(database.embedding_strategies):
        path = f"{where}.embedding_strategies[{j}]"
        _known(EMBEDDERS, embedding.type, f"{path}.type", EMBEDDERS.get(embedding.type))
        _checked(f"{path}.config", partial(create_embedder, embedding))  # loads nothing
        warnings += _ignored(
            f"{path}.config",
            embedding.config,
            None,
            embedding.type,
            EMBEDDER_KEYS.get(embedding.type),
        )
    for j, retrieval in enumerate(database.retrieval_strategies):
        path = f"{where}.retrieval_strategies[{j}]"
        _known(RETRIEVERS, retrieval.type, f"{path}.type", RETRIEVERS.get(retrieval.type))
        warnings += _ignored(
            f"{path}.config",
            retrieval.config,
            None,
            retrieval.type,
            RETRIEVAL_KEYS.get(canonical(retrieval.type)),
        )
    _checked(f"{where}.retrieval_strategies", lambda: Strategies(database).check())
    return warnings


def _known(registry: Registry[Any], name: str, path: str, found: Any) -> Any:
    """`found`, or ConfigInvalid naming the path, why (for a LlamaFarm type we cannot
    provide) and every name the family knows."""
    if found is None:
        reason = (
            f"; {name} is not provided here: {UNAVAILABLE[name]}" if name in UNAVAILABLE else ""
        )
        raise ConfigInvalid(f"{path}: {registry.unknown(name)}{reason}")
    return found


def _checked(path: str, make: Callable[[], Any]) -> Any:
    """`make()`, its ConfigInvalid prefixed with the config path."""
    try:
        return make()
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"{path}: {exc.detail}") from exc


def _ignored(
    path: str,
    config: Mapping[str, Any],
    honoured: Iterable[str] | None,
    kind: str,
    unhonoured: Iterable[str] | None = None,
) -> list[str]:
    """A warning per key outside `honoured` (or inside `unhonoured`)."""
    if honoured is not None:
        keys = sorted(set(config) - set(honoured))
    else:
        keys = sorted(set(config) & set(unhonoured or ()))
    return [f"{path}.{key}: not supported by {kind} here; accepted and ignored" for key in keys]
