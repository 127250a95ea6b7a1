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
from llamafarm.shared import Shared

__all__ = [
    "EMBEDDERS",
    "Embedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "UniversalEmbedder",
    "create_embedder",
]

EmbedderFactory = Callable[[dict[str, Any], Shared | None], Embedder]
"""Takes a strategy's `config` and the process's loaded models (a local model loads there)."""

EMBEDDERS: Registry[EmbedderFactory] = Registry("embedding strategy")
"""Embedder factories by the `type` a strategy names."""
EMBEDDERS.register("UniversalEmbedder", UniversalEmbedder)
EMBEDDERS.register("OllamaEmbedder", lambda config, _: OllamaEmbedder(config))
EMBEDDERS.register("OpenAIEmbedder", lambda config, _: OpenAIEmbedder(config))


def create_embedder(strategy: EmbeddingStrategy, *, shared: Shared | None = None) -> Embedder:
    """The embedder a strategy describes; ConfigInvalid names the strategy and the bad key.
    `shared`: the process's loaded models (ModelCache's); None: a local model loads its own."""
    factory = EMBEDDERS.find(strategy.type, owner=strategy.name)
    try:
        return factory(dict(strategy.config), shared)
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"embedding strategy {strategy.name!r}: {exc.detail}") from exc
