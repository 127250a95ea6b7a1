"""Chat providers: one module per backend, chosen by a model's `provider`."""

from __future__ import annotations

from collections.abc import Callable

from llamafarm.chat.providers.base import Provider
from llamafarm.chat.providers.openai_compat import OpenAICompatibleProvider
from llamafarm.config.models import ModelConfig
from llamafarm.errors import ConfigInvalid

__all__ = ["PROVIDERS", "OpenAICompatibleProvider", "Provider", "create_provider"]


def _universal(model: ModelConfig) -> Provider:
    # Imported only when a model asks for it: the local runtime (xllamacpp) is heavy to load.
    from llamafarm.chat.providers.universal import UniversalProvider

    provider: Provider = UniversalProvider(model)
    return provider


PROVIDERS: dict[str, Callable[[ModelConfig], Provider]] = {
    # --- universal: the built-in local runtime (llamafarm.chat.providers.universal) ---
    "universal": _universal,
    # --- servers speaking OpenAI's chat completions API ---
    "openai": OpenAICompatibleProvider,
    "ollama": OpenAICompatibleProvider,
}
"""Provider factories by the `provider` a model config names; each takes the ModelConfig."""


def create_provider(model: ModelConfig) -> Provider:
    """The provider a model config describes; ConfigInvalid names the model."""
    factory = PROVIDERS.get(model.provider)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigInvalid(
            f"model {model.name!r}: unknown provider {model.provider!r} (known: {known})"
        )
    try:
        return factory(model)
    except ConfigInvalid as exc:
        if repr(model.name) in exc.detail:
            raise
        raise ConfigInvalid(f"model {model.name!r}: {exc.detail}") from exc
