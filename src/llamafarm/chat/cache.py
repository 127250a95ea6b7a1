"""The process's model cache with the chat providers added: embedders, rerankers and chat models."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from llamafarm.chat.providers import create_provider
from llamafarm.chat.providers.base import Provider
from llamafarm.chat.providers.streams import Streams
from llamafarm.config.models import ModelConfig
from llamafarm.errors import LfError
from llamafarm.models.first_use import FirstUse
from llamafarm.projects import ProjectStore
from llamafarm.rag.cache import ModelCache, key_of
from llamafarm.rag.stores import ChromaClients
from llamafarm.residents import Residents

log = logging.getLogger(__name__)


class ChatModelCache(ModelCache):
    """`ModelCache` plus chat providers, kept the same way (least recently used goes). The
    remote ones stream through `streams`, which its owner closes on its event loop."""

    def __init__(
        self,
        *,
        hf_cache: Path | None = None,
        streams: Streams | None = None,
        first_use: FirstUse | None = None,
        residents: Residents | None = None,
        chroma: ChromaClients | None = None,
    ) -> None:
        super().__init__(hf_cache=hf_cache, residents=residents, chroma=chroma)
        self.streams = Streams() if streams is None else streams
        self.first_use = FirstUse() if first_use is None else first_use
        """Fetches a `universal` model not cached yet, before its provider is made (when
        `LF_ALLOW_DOWNLOADS` allows); by default it never does."""
        self._providers: OrderedDict[str, Provider] = OrderedDict()

    def provider(self, model: ModelConfig) -> Provider:
        return self._get(
            self._providers,
            _provider_key(model),
            lambda: create_provider(model, shared=self.shared, streams=self.streams),
        )

    def cached_provider(self, model: ModelConfig) -> Provider | None:
        """The provider if one is kept already (as recently used as `provider` makes it);
        making one may block (an HTTP client's certificates, a GGUF file's header), so
        callers on the event loop make it elsewhere."""
        key = key_of(_provider_key(model))
        with self._lock:
            provider = self._providers.get(key)
            if provider is not None:
                self._providers.move_to_end(key)
            return provider

    def load_kept(self, projects: ProjectStore) -> int:
        """Load the local models that a project's config marks `keep_loaded` (at start: they
        stay loaded for the process's life); how many loaded. A model that cannot load is
        logged and the others go on."""
        loaded = 0
        for namespace in projects.namespaces():
            for project in projects.list(namespace):
                if project.validation_error is not None:
                    continue
                try:
                    config = projects.load(namespace, project.name)
                except LfError:  # changed or deleted since it was listed
                    continue
                for model in config.runtime.model_list():
                    if not (model.keep_loaded and model.provider == "universal"):
                        continue
                    try:
                        self.first_use.fetch(model.model)
                        self.provider(model).check()
                        loaded += 1
                    except LfError as exc:
                        log.warning(
                            "keep_loaded model %s of %s/%s did not load: %s",
                            model.model,
                            namespace,
                            project.name,
                            exc.detail,
                        )
        return loaded

    def close(self) -> None:
        """Let go of the connections the models hold (HTTP clients of remote services), and of
        what they loaded."""
        self._close_all(self._embedders, self._rerankers, self._providers)


def _provider_key(model: ModelConfig) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude={"description", "prompts"})
