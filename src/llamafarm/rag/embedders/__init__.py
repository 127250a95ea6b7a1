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

__all__ = [
    "EMBEDDERS",
    "Embedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "UniversalEmbedder",
    "create_embedder",
]

EMBEDDERS: dict[str, Callable[[dict[str, Any]], Embedder]] = {
    "UniversalEmbedder": UniversalEmbedder,
    "OllamaEmbedder": OllamaEmbedder,
    "OpenAIEmbedder": OpenAIEmbedder,
}
"""Embedder classes by the `type` a strategy names; each takes the strategy's `config`."""


def create_embedder(strategy: EmbeddingStrategy) -> Embedder:
    """The embedder a strategy describes; ConfigInvalid names the strategy and the bad key."""
    factory = EMBEDDERS.get(strategy.type)
    if factory is None:
        known = ", ".join(sorted(EMBEDDERS))
        raise ConfigInvalid(
            f"embedding strategy {strategy.name!r}: unknown type {strategy.type!r} (known: {known})"
        )
    try:
        return factory(dict(strategy.config))
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"embedding strategy {strategy.name!r}: {exc.detail}") from exc
