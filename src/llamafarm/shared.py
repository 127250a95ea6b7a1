"""What one process loads once and shares across projects: models by key, and a thread pool.

An ONNX session (~160 MB) or a llama.cpp server (~240 MB) per project would multiply memory by
the number of projects; they hold nothing but read-only model files (a llama.cpp server queues
its generations itself), so sharing them cannot leak state between projects. The app's lifespan
and the worker's start each make one `Shared` (through their ModelCache) and close it with
themselves; it reaches the models as a plain argument.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from llamafarm.residents import Residents

T = TypeVar("T")


class Shared:
    """Things loaded once per key; a load blocks only the callers of the same key."""

    def __init__(self, residents: Residents | None = None, *, threads: int | None = None) -> None:
        """`residents`: where the chat models are held (default: loaded until closed)."""
        self.residents = Residents() if residents is None else residents
        """The loaded chat models, which unload when idle or to stay under a memory cap."""
        self.threads = threads
        """CPU threads an ONNX model (embedder, cross-encoder) runs a call on when its config
        names none; None: every CPU. The worker runs its embedder's calls side by side, on
        fewer threads each (`llamafarm.rag.cache.ModelCache`'s `lanes`)."""
        self._items: dict[Hashable, Any] = {}
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def load(self, key: Hashable, make: Callable[[], T]) -> T:
        """The item kept under `key`, made by `make` the first time (an error keeps nothing)."""
        with self._lock:
            if key in self._items:
                return self._items[key]  # type: ignore[no-any-return]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._items:
                    return self._items[key]  # type: ignore[no-any-return]
            item = make()
            with self._lock:
                self._items[key] = item
                self._loading.pop(key, None)
            return item

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for work that runs beside a request's own (the lexical side of a hybrid
        search); made on first use."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(thread_name_prefix="lf-shared")
            return self._pool

    def close(self) -> None:
        """Let go of the loaded items (freed with their last user) and stop the pool."""
        self.residents.close()
        with self._lock:
            self._items.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
