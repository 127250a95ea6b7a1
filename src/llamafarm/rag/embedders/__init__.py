"""Embedders: one module per backend, chosen by an embedding strategy's `type`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.errors import ConfigInvalid
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.embedders.ollama import OllamaEmbedder
from llamafarm.rag.embedders.openai import OpenAIEmbedder
from llamafarm.rag.embedders.universal import UniversalEmbedder
from llamafarm.registry import Registry

__all__ = [
    "EMBEDDERS",
    "Embedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "UniversalEmbedder",
    "create_embedder",
]

EMBEDDERS: Registry[Callable[[dict[str, Any]], Embedder]] = Registry("embedding strategy")
"""Embedder classes by the `type` a strategy names; each takes the strategy's `config`."""
EMBEDDERS.register("UniversalEmbedder", UniversalEmbedder)
EMBEDDERS.register("OllamaEmbedder", OllamaEmbedder)
EMBEDDERS.register("OpenAIEmbedder", OpenAIEmbedder)


def create_embedder(strategy: EmbeddingStrategy) -> Embedder:
    """The embedder a strategy describes; ConfigInvalid names the strategy and the bad key."""
    factory = EMBEDDERS.find(strategy.type, owner=strategy.name)
    try:
        return factory(dict(strategy.config))
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"embedding strategy {strategy.name!r}: {exc.detail}") from exc
