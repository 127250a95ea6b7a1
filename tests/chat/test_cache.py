"""The chat model cache: providers kept the way embedders and rerankers are."""

from __future__ import annotations

from pathlib import Path

from llamafarm.chat.cache import ChatModelCache
from llamafarm.config.models import ModelConfig
from llamafarm.rag.cache import KEPT


def test_a_cached_provider_is_found_without_making_one_and_kept_as_used(tmp_path: Path) -> None:
    models = ChatModelCache(hf_cache=tmp_path)

    def model(i: int) -> ModelConfig:
        return ModelConfig(name="m", provider="openai", model=f"m{i}", base_url="http://x:1/v1")

    assert models.cached_provider(model(0)) is None
    first = models.provider(model(0))
    assert models.cached_provider(model(0)) is first
    for i in range(1, KEPT + 1):  # the first stays the most recently used all along
        models.provider(model(i))
        assert models.cached_provider(model(0)) is first
    assert models.cached_provider(model(1)) is None  # the least recently used went
    models.close()
