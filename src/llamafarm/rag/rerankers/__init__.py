"""Rerankers: one module per backend, chosen by the reranker config's `type`: a local ONNX
cross-encoder (`CrossEncoderReranker`), or a `/rerank` service (`RemoteReranker`). A config
without a `type` names the service by its `base_url` alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from huggingface_hub.errors import HFValidationError

# Public, but exported lazily, which mypy cannot see.
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined,unused-ignore]
from pydantic import Field, PositiveFloat, field_validator, model_validator

from llamafarm.config.models import NonEmpty, StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.rerankers.base import Reranker
from llamafarm.rag.rerankers.cross_encoder import CrossEncoderReranker
from llamafarm.rag.rerankers.remote import RemoteReranker, Wire
from llamafarm.registry import Registry
from llamafarm.shared import Shared

__all__ = [
    "RERANKERS",
    "CrossEncoderReranker",
    "RemoteReranker",
    "Reranker",
    "RerankerConfig",
    "create_reranker",
]


LOCAL, REMOTE = "CrossEncoderReranker", "RemoteReranker"


class RerankerConfig(StrictModel):
    """The `config:` of a reranked retrieval strategy: the model, and how many hits to rerank."""

    type: str | None = Field(
        default=None,
        description=f"The reranker: {LOCAL} (local ONNX) or {REMOTE} (a /rerank service); "
        f"unset: {REMOTE} when base_url is set, else {LOCAL}.",
    )
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

    @field_validator("type")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in RERANKERS:
            raise ValueError(RERANKERS.unknown(value))
        return value

    @property
    def reranker(self) -> str:
        """The type, named or implied by `base_url`."""
        return self.type or (LOCAL if self.base_url is None else REMOTE)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.final_k is not None and self.final_k > self.initial_k:
            raise ValueError(f"final_k ({self.final_k}) exceeds initial_k ({self.initial_k})")
        if self.reranker == REMOTE and self.base_url is None:
            raise ValueError(f"a {REMOTE} needs base_url (its service)")
        if self.reranker == LOCAL and self.base_url is not None:
            raise ValueError(f"base_url is for a {REMOTE}; a {LOCAL} runs locally")
        if self.reranker == LOCAL:
            try:
                validate_repo_id(self.model_name)
            except HFValidationError as exc:
                raise ValueError(f"model_name: not a Hugging Face repo id: {exc}") from exc
        return self


RerankerFactory = Callable[[RerankerConfig, Path | None, Shared | None], Reranker]
"""Takes the parsed config, the Hugging Face cache (None: the default) and the process's
loaded models (a local model loads there)."""


def _local(settings: RerankerConfig, cache_dir: Path | None, shared: Shared | None) -> Reranker:
    return CrossEncoderReranker(
        settings.model_name, cache_dir=cache_dir, max_length=settings.max_length, shared=shared
    )


def _remote(settings: RerankerConfig, _: Path | None, __: Shared | None) -> Reranker:
    assert settings.base_url is not None  # the config's check
    return RemoteReranker(
        settings.base_url,
        settings.model_name,
        api_key=settings.api_key,
        timeout=settings.timeout,
        protocol=settings.protocol,
    )


RERANKERS: Registry[RerankerFactory] = Registry("reranker")
"""Reranker factories by the `type` a reranker config names (or its `base_url` implies)."""
RERANKERS.register(LOCAL, _local)
RERANKERS.register(REMOTE, _remote)


def create_reranker(
    config: Mapping[str, Any], *, cache_dir: Path | None = None, shared: Shared | None = None
) -> Reranker:
    """The reranker a config describes; loads nothing, so a missing model fails on first use.
    `shared`: the process's loaded models, where a local one loads (None: its own)."""
    settings = parse_config(RerankerConfig, dict(config), what="reranker")
    return RERANKERS.find(settings.reranker)(settings, cache_dir, shared)
