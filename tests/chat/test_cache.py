"""The chat model cache: providers kept the way embedders and rerankers are."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llamafarm.chat.cache import ChatModelCache
from llamafarm.chat.providers import OpenAICompatibleProvider, Streams
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


def test_remote_providers_stream_through_the_sessions_of_the_cache_s_owner(
    tmp_path: Path,
) -> None:
    streams = Streams()
    models = ChatModelCache(hf_cache=tmp_path, streams=streams)

    def provider(name: str) -> OpenAICompatibleProvider:
        model = ModelConfig(name="m", provider="openai", model=name, base_url="http://x:1/v1")
        made = models.provider(model)
        assert isinstance(made, OpenAICompatibleProvider)
        return made

    first, second = provider("a"), provider("b")
    assert first.streams is streams and second.streams is streams

    async def one_session_per_loop_closed_by_the_owner() -> None:
        session = first.streams.session()
        assert second.streams.session() is session
        await streams.close()
        assert session.closed
        assert streams.session() is not session  # a later stream opens a new one
        await streams.close()

    asyncio.run(one_session_per_loop_closed_by_the_owner())
    models.close()
