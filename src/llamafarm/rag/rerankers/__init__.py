"""Rerankers: a local ONNX cross-encoder, or a `/rerank` service when `base_url` is set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from huggingface_hub.errors import HFValidationError

# Public, but exported lazily, which mypy cannot see.
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined,unused-ignore]
from pydantic import Field, PositiveFloat, model_validator

from llamafarm.config.models import NonEmpty, StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.rerankers.base import Reranker
from llamafarm.rag.rerankers.cross_encoder import CrossEncoderReranker
from llamafarm.rag.rerankers.remote import RemoteReranker, Wire
from llamafarm.shared import Shared

__all__ = [
    "CrossEncoderReranker",
    "RemoteReranker",
    "Reranker",
    "RerankerConfig",
    "create_reranker",
]


class RerankerConfig(StrictModel):
    """The `config:` of a reranked retrieval strategy: the model, and how many hits to rerank."""

    model_name: NonEmpty = Field(
        description="A Hugging Face repo id found in the local cache, or the service's model name."
    )
    base_url: str | None = Field(
        default=None, description="A /rerank service (e.g. http://host/v1); unset: run locally."
    )
    api_key: str | None = None
    protocol: Wire = Field(
        default="cohere",
        description="cohere: Cohere, Jina, vLLM, llama.cpp; tei: text-embeddings-inference.",
    )
    timeout: PositiveFloat = 30.0
    max_length: int = Field(
        default=512, ge=8, le=8192, description="Tokens kept per (query, text) pair."
    )
    initial_k: int = Field(default=30, ge=1, le=1000, description="Candidates to rerank.")
    final_k: int | None = Field(default=None, ge=1, le=1000, description="Results kept.")
    strategy: str | None = Field(default=None, description="The first-stage retrieval strategy.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.final_k is not None and self.final_k > self.initial_k:
            raise ValueError(f"final_k ({self.final_k}) exceeds initial_k ({self.initial_k})")
        if self.base_url is None:
            try:
                validate_repo_id(self.model_name)
            except HFValidationError as exc:
                raise ValueError(f"model_name: not a Hugging Face repo id: {exc}") from exc
        return self


def create_reranker(
    config: Mapping[str, Any], *, cache_dir: Path | None = None, shared: Shared | None = None
) -> Reranker:
    """The reranker a config describes; loads nothing, so a missing model fails on first use.
    `shared`: the process's loaded models, where a local one loads (None: its own)."""
    settings = parse_config(RerankerConfig, dict(config), what="reranker")
    if settings.base_url is not None:
        return RemoteReranker(
            settings.base_url,
            settings.model_name,
            api_key=settings.api_key,
            timeout=settings.timeout,
            protocol=settings.protocol,
        )
    return CrossEncoderReranker(
        settings.model_name, cache_dir=cache_dir, max_length=settings.max_length, shared=shared
    )
