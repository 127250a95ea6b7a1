"""Embedders: one module per backend, chosen by an embedding strategy's `type`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.errors import ConfigInvalid
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.embedders.ollama import OllamaConfig, OllamaEmbedder
from llamafarm.rag.embedders.openai import OpenAIConfig, OpenAIEmbedder
from llamafarm.rag.embedders.universal import (
    BUNDLED,
    BUNDLED_ALIASES,
    BUNDLED_DIMENSION,
    UniversalConfig,
    UniversalEmbedder,
)
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
    "vector_key",
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


_CONFIGS: dict[str, type[BaseModel]] = {
    "UniversalEmbedder": UniversalConfig,
    "OllamaEmbedder": OllamaConfig,
    "OpenAIEmbedder": OpenAIConfig,
}
VECTOR_NEUTRAL = frozenset({"base_url", "api_key", "batch_size", "timeout", "threads", "cache_dir"})
"""Keys that change how vectors are fetched, never the vectors themselves."""


def vector_key(strategy: EmbeddingStrategy) -> dict[str, Any]:
    """What decides the vectors a strategy's embedder makes: its type (LlamaFarm's
    sentence-transformers types are ours), model, dimension, normalisation, length, with
    defaults filled in, so that writing a default out does not count as a change. Read from the
    config alone: nothing is loaded or contacted."""
    kind = strategy.type
    dropped = UNHONOURED.get(kind, frozenset())
    config = {k: v for k, v in strategy.config.items() if k not in dropped}
    if kind in ("HuggingFaceEmbedder", "SentenceTransformerEmbedder"):
        kind, config = "UniversalEmbedder", {_RENAMED.get(k, k): v for k, v in config.items()}
    model = _CONFIGS.get(kind)
    if model is not None:
        try:
            config = model.model_validate(config).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigInvalid(f"embedding strategy {strategy.name!r}: {exc}") from exc
    if kind == "UniversalEmbedder" and config.get("model") in BUNDLED_ALIASES:
        config["model"] = BUNDLED
        config["dimension"] = config.get("dimension") or BUNDLED_DIMENSION
    return {"type": kind, **{k: v for k, v in sorted(config.items()) if k not in VECTOR_NEUTRAL}}
