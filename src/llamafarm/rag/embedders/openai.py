"""Embeddings from an OpenAI-compatible server (`POST /embeddings`)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PositiveFloat, PositiveInt

from llamafarm.config.models import NonEmpty, StrictModel
from llamafarm.http import normalize_url
from llamafarm.rag.embedders.base import HttpEmbedder, parse_config

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIConfig(StrictModel):
    base_url: str | None = None
    """None (LlamaFarm's default, written out as `null`): OpenAI's own API."""
    api_key: str | None = None
    model: NonEmpty
    dimension: PositiveInt | None = None
    batch_size: PositiveInt = Field(default=64, le=2048)
    timeout: PositiveFloat = 30.0


class OpenAIEmbedder(HttpEmbedder):
    """Calls OpenAI's embeddings API or any server that speaks its wire format."""

    type_name: ClassVar[str] = "OpenAIEmbedder"
    path: ClassVar[str] = "/embeddings"

    def __init__(self, config: dict[str, Any]) -> None:
        settings = parse_config(OpenAIConfig, config, what=self.type_name)
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else None
        super().__init__(
            base_url=normalize_url(settings.base_url or DEFAULT_BASE_URL, what=self.type_name),
            model=settings.model,
            dimension=settings.dimension,
            batch_size=settings.batch_size,
            timeout=settings.timeout,
            headers=headers,
        )

    def _vectors(self, body: Any) -> list[Any]:
        # `index` says which input each item embeds; servers may answer out of order.
        items = sorted(enumerate(body["data"]), key=lambda pair: pair[1].get("index", pair[0]))
        return [item["embedding"] for _, item in items]
