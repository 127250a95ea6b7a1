"""Embedders, rerankers and embedded vector-store clients, opened once per owner (the app's
lifespan, the worker's start) and shared by its requests.

`llamafarm.chat.cache.ChatModelCache` adds the chat providers on top.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.rag.embedders import create_embedder
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.embedders.batching import BatchingEmbedder
from llamafarm.rag.rerankers import Reranker, create_reranker
from llamafarm.rag.stores import ChromaClients
from llamafarm.residents import Residents
from llamafarm.shared import Shared
from llamafarm.system.cpus import default_threads

KEPT = 8
"""Models of each kind kept; the least recently used goes (a client may name any reranker)."""
MAX_LANES = 2
"""Most embedding rounds a worker runs at once (`BatchingEmbedder`'s lanes): one per CPU up to
this, the CPUs shared out among them. Each running round holds its own activations, so more
lanes take more memory; 2 is what was measured (2 cores, bench/ingest.py)."""

T = TypeVar("T")


class ModelCache:
    """Keyed by the whole config, so an edited strategy gets a new instance."""

    def __init__(
        self,
        *,
        hf_cache: Path | None = None,
        residents: Residents | None = None,
        chroma: ChromaClients | None = None,
        lanes: int = 1,
    ) -> None:
        """`lanes`: embedding rounds run at once (the worker's, for throughput: `lanes_for`);
        the CPUs are shared out among them. 1: each call on every CPU (the API's queries, for
        latency)."""
        self.hf_cache = hf_cache
        self.lanes = max(1, lanes)
        self.shared = Shared(
            residents, threads=None if self.lanes == 1 else max(1, default_threads() // self.lanes)
        )
        """What the models load (ONNX sessions, llama.cpp servers), once per process: the
        instances below come and go with configs, the loaded files stay."""
        self.chroma = ChromaClients() if chroma is None else chroma
        """The Chroma stores' open clients, one per folder or server, and the server-wide
        settings (`owner_clients`); `create_store` takes it. Closed with this cache."""
        self._embedders: OrderedDict[str, Embedder] = OrderedDict()
        self._rerankers: OrderedDict[str, Reranker] = OrderedDict()
        self._lock = threading.Lock()

    def embedder(self, strategy: EmbeddingStrategy) -> Embedder:
        # Batching: texts of concurrent callers (files of a worker, queries of the API)
        # are embedded together.
        config = strategy.model_dump(mode="json", include={"type", "config"})
        return self._get(
            self._embedders,
            config,
            lambda: BatchingEmbedder(
                create_embedder(strategy, shared=self.shared), lanes=self.lanes
            ),
        )

    def reranker(self, config: Mapping[str, Any]) -> Reranker:
        return self._get(
            self._rerankers,
            dict(config),
            lambda: create_reranker(config, cache_dir=self.hf_cache, shared=self.shared),
        )

    def close(self) -> None:
        """Let go of the connections the models hold (HTTP clients of remote services), of
        what they loaded, and of the stores' clients."""
        self._close_all(self._embedders, self._rerankers)

    def _close_all(self, *families: OrderedDict[str, Any]) -> None:
        with self._lock:
            models = [m for kept in families for m in kept.values()]
            for kept in families:
                kept.clear()
        for model in models:
            _close(model)
        self.shared.close()  # after the models: what they loaded goes with its last user
        self.chroma.close()

    def _get(self, kept: OrderedDict[str, T], config: Any, make: Callable[[], T]) -> T:
        key = key_of(config)
        with self._lock:
            if key not in kept:
                kept[key] = make()  # cheap: models load on first use, outside this lock
                while len(kept) > KEPT:
                    # Not closed: a request may still be using it; it goes with its last user.
                    kept.popitem(last=False)
            kept.move_to_end(key)
            return kept[key]


def lanes_for(cpus: int) -> int:
    """A worker's embedding lanes on `cpus` CPUs."""
    return max(1, min(cpus, MAX_LANES))


def key_of(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _close(model: object) -> None:
    close = getattr(model, "close", None)
    if callable(close):
        close()
