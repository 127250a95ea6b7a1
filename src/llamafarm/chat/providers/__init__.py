"""Chat providers: one module per backend, chosen by a model's `provider`."""

from __future__ import annotations

from collections.abc import Callable

from llamafarm.chat.providers.base import Provider
from llamafarm.chat.providers.openai_compat import OpenAICompatibleProvider
from llamafarm.chat.providers.prompted import PromptedTools
from llamafarm.chat.providers.streams import Streams
from llamafarm.config.models import ModelConfig
from llamafarm.errors import ConfigInvalid
from llamafarm.registry import Registry
from llamafarm.shared import Shared

__all__ = ["PROVIDERS", "OpenAICompatibleProvider", "Provider", "Streams", "create_provider"]


def _universal(model: ModelConfig, shared: Shared | None, _: Streams | None) -> Provider:
    # Imported only when a model asks for it: the local runtime (xllamacpp) is heavy to load.
    from llamafarm.chat.providers.universal import UniversalProvider

    provider: Provider = UniversalProvider(model, shared)
    return provider


ProviderFactory = Callable[[ModelConfig, Shared | None, Streams | None], Provider]
"""Takes the ModelConfig, the process's loaded models (a local model loads there) and its
streaming sessions (a remote model streams through them)."""

PROVIDERS: Registry[ProviderFactory] = Registry("model", key="provider")
"""Provider factories by the `provider` a model config names."""
# --- universal: the built-in local runtime (llamafarm.chat.providers.universal) ---
PROVIDERS.register("universal", _universal)
# --- servers speaking OpenAI's chat completions API ---
PROVIDERS.register(
    "openai", lambda model, _, streams: OpenAICompatibleProvider(model, streams=streams)
)
PROVIDERS.register(
    "ollama", lambda model, _, streams: OpenAICompatibleProvider(model, streams=streams)
)
PROVIDERS.register(
    "lemonade", lambda model, _, streams: OpenAICompatibleProvider(model, streams=streams)
)


def create_provider(
    model: ModelConfig, *, shared: Shared | None = None, streams: Streams | None = None
) -> Provider:
    """The provider a model config describes; ConfigInvalid names the model.
    `shared`: the process's loaded models (ModelCache's); None: a local model loads its own.
    `streams`: the process's streaming sessions; None: a remote model opens its own."""
    factory = PROVIDERS.find(model.provider, owner=model.name)
    try:
        provider = factory(model, shared, streams)
    except ConfigInvalid as exc:
        if repr(model.name) in exc.detail:
            raise
        raise ConfigInvalid(f"model {model.name!r}: {exc.detail}") from exc
    if model.tool_call_strategy == "prompt_based":
        provider = PromptedTools(provider)
    return provider
