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
    "UNHONOURED",
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

UNHONOURED: dict[str, frozenset[str]] = {
    "UniversalEmbedder": frozenset({"base_url", "timeout", "auto_pull"}),
    "HuggingFaceEmbedder": frozenset({"device", "show_progress_bar"}),
    "SentenceTransformerEmbedder": frozenset({"device"}),
    "OllamaEmbedder": frozenset({"auto_pull"}),
    "OpenAIEmbedder": frozenset({"organization", "max_retries"}),
}
"""LlamaFarm config keys each type accepts but cannot honour (the model runs in-process and
on the CPU; nothing is pulled); they are dropped here and warned about at validation."""
_RENAMED = {"model_name": "model", "cache_folder": "cache_dir", "normalize_embeddings": "normalize"}
"""LlamaFarm's sentence-transformers keys → UniversalEmbedder's."""


def _sentence_transformer(config: dict[str, Any], shared: Shared | None) -> Embedder:
    """LlamaFarm's HuggingFace and SentenceTransformer embedders: the same model run by our
    ONNX embedder, the bundled MiniLM or an ONNX export in the local Hugging Face cache."""
    return UniversalEmbedder({_RENAMED.get(k, k): v for k, v in config.items()}, shared)


EMBEDDERS.register("HuggingFaceEmbedder", _sentence_transformer)
EMBEDDERS.register("SentenceTransformerEmbedder", _sentence_transformer)


def create_embedder(strategy: EmbeddingStrategy, *, shared: Shared | None = None) -> Embedder:
    """The embedder a strategy describes; ConfigInvalid names the strategy and the bad key.
    `shared`: the process's loaded models (ModelCache's); None: a local model loads its own."""
    factory = EMBEDDERS.find(strategy.type, owner=strategy.name)
    dropped = UNHONOURED.get(strategy.type, frozenset())
    config = {k: v for k, v in strategy.config.items() if k not in dropped}
    try:
        return factory(config, shared)
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"embedding strategy {strategy.name!r}: {exc.detail}") from exc
