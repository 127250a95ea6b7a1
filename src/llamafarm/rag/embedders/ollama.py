"""Embeddings from an Ollama server (`POST /api/embed`)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import Field, PositiveFloat, PositiveInt

from llamafarm.config.models import NonEmpty, StrictModel
from llamafarm.http import normalize_url
from llamafarm.rag.embedders.base import HttpEmbedder, parse_config

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434


class OllamaConfig(StrictModel):
    base_url: str | None = Field(
        default=None, description="Default: $OLLAMA_HOST, else http://localhost:11434."
    )
    model: NonEmpty
    dimension: PositiveInt | None = Field(
        default=None, description="Learned from the first response when not given."
    )
    batch_size: PositiveInt = Field(default=32, le=2048)
    timeout: PositiveFloat = 30.0


def ollama_url(value: str | None) -> str:
    """Ollama's base URL as its own clients read OLLAMA_HOST: scheme and port optional, no /v1."""
    host = (value or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in host:
        # Like the ollama CLI: a bare `host` or `host:port` means http, port 11434 by default.
        authority, slash, rest = host.partition("/")
        if not authority.rsplit("]", 1)[-1].count(":"):
            authority = f"{authority}:{DEFAULT_PORT}"
        host = f"http://{authority}{slash}{rest}"
    host = host.removesuffix("/v1")  # the OpenAI-compatible prefix; /api/embed lives beside it
    return normalize_url(host, what="OllamaEmbedder")


class OllamaEmbedder(HttpEmbedder):
    """Calls Ollama's native embedding API; vectors come back as the model makes them."""

    type_name: ClassVar[str] = "OllamaEmbedder"
    path: ClassVar[str] = "/api/embed"

    def __init__(self, config: dict[str, Any]) -> None:
        settings = parse_config(OllamaConfig, config, what=self.type_name)
        super().__init__(
            base_url=ollama_url(settings.base_url),
            model=settings.model,
            dimension=settings.dimension,
            batch_size=settings.batch_size,
            timeout=settings.timeout,
        )

    def _vectors(self, body: Any) -> list[Any]:
        embeddings: list[Any] = body["embeddings"]
        return embeddings
