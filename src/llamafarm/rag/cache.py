"""Embedders and rerankers loaded once per process and shared by its requests or files."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.rag.embedders import create_embedder
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.embedders.batching import BatchingEmbedder
from llamafarm.rag.rerankers import Reranker, create_reranker


class ModelCache:
    """Keyed by the whole config, so an edited strategy gets a new instance."""

    def __init__(self, *, hf_cache: Path | None = None) -> None:
        self.hf_cache = hf_cache
        self._embedders: dict[str, Embedder] = {}
        self._rerankers: dict[str, Reranker] = {}
        self._lock = threading.Lock()

    def embedder(self, strategy: EmbeddingStrategy) -> Embedder:
        # Batching: texts of concurrent callers (files of a worker, queries of the API)
        # are embedded together.
        key = _key(strategy.model_dump(mode="json"))
        with self._lock:
            if key not in self._embedders:
                self._embedders[key] = BatchingEmbedder(create_embedder(strategy))
            return self._embedders[key]

    def reranker(self, config: Mapping[str, Any]) -> Reranker:
        key = _key(dict(config))
        with self._lock:
            if key not in self._rerankers:
                self._rerankers[key] = create_reranker(config, cache_dir=self.hf_cache)
            return self._rerankers[key]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
