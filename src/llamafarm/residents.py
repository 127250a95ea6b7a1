"""The local chat models a process holds in memory: loaded on first use (or at start for
`keep_loaded`), unloaded after an idle time, and held under a memory cap.

A loaded llama.cpp server costs its GGUF file plus a KV cache per slot (~0.5 GB for the bundled
135M model with its 8 slots, several GB for a 7B model). Kept for the process's life, every model
a project ever named would stay resident; `Residents` lets go of one when nobody used it for
`idle_ttl` seconds, and before a load that would take the resident total past `memory_bytes` it
unloads the least recently used idle models first. A model in use (a generation holds a `use`)
or pinned (`keep_loaded`) is never unloaded; when the cap cannot be met without one, the load is
refused with a 503 that says what holds the memory. Unloading drops the last reference the
process keeps; the item is freed once the last generation using it ends.

No library does this for in-process llama.cpp servers (xllamacpp has none; Ollama's scheduler
is the same idea in Go, with `keep_alive` and `OLLAMA_MAX_LOADED_MODELS`), so it is written here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from llamafarm.errors import Unavailable
from llamafarm.formats import human_size

T = TypeVar("T")
log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0
"""Seconds between two looks for idle models (shorter when the idle time is)."""


@dataclass(frozen=True)
class Resident:
    """What `Residents.loaded` says about one loaded model."""

    name: str
    path: str
    size_bytes: int
    """The estimate the memory cap counts: the file plus the KV cache of every slot."""
    pinned: bool
    in_use: int
    loaded_at: datetime
    idle_seconds: float
    details: dict[str, Any]


@dataclass
class _Entry:
    item: Any
    name: str
    path: str
    size: int
    pinned: bool
    details: dict[str, Any]
    loaded_at: datetime
    last_used: float
    users: int = 0


@dataclass
class _Loading:
    lock: threading.Lock = field(default_factory=threading.Lock)
    size: int = 0


class Residents:
    """Loaded models by key; a load blocks only the callers of the same key."""

    def __init__(
        self,
        *,
        idle_ttl: float | None = None,
        memory_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`idle_ttl`: seconds unused before a model is unloaded (None: never);
        `memory_bytes`: the most the resident models may take together (None: no cap)."""
        self.idle_ttl = idle_ttl
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._loading: dict[Hashable, _Loading] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @contextlib.contextmanager
    def use(
        self,
        key: Hashable,
        make: Callable[[], T],
        *,
        name: str,
        path: str,
        size: int,
        pinned: bool = False,
        details: dict[str, Any] | None = None,
    ) -> Iterator[T]:
        """The item under `key`, loaded by `make` when it is not (an error keeps nothing), and
        held in use (never unloaded) until the block ends. `pinned` keeps it for good."""
        entry = self._acquire(key, make, name, path, size, pinned, details or {})
        try:
            yield entry.item
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = self._clock()

    def _acquire(
        self,
        key: Hashable,
        make: Callable[[], Any],
        name: str,
        path: str,
        size: int,
        pinned: bool,
        details: dict[str, Any],
    ) -> _Entry:
        with self._lock:
            entry = self._take(key, pinned)
            if entry is not None:
                return entry
            loading = self._loading.setdefault(key, _Loading())
        with loading.lock:
            with self._lock:
                entry = self._take(key, pinned)
                if entry is not None:
                    return entry
                evicted = self._make_room(name, size)
                loading.size = size
            # Freed here, before the new one loads, so the two are never resident together.
            del evicted
            try:
                item = make()
            finally:
                with self._lock:
                    loading.size = 0
            entry = _Entry(
                item=item,
                name=name,
                path=path,
                size=size,
                pinned=pinned,
                details=details,
                loaded_at=datetime.now(UTC),
                last_used=self._clock(),
                users=1,
            )
            with self._lock:
                if not self._stop.is_set():  # closed while it loaded: not kept
                    self._entries[key] = entry
                self._loading.pop(key, None)
            log.info("Loaded model %s (about %s)", name, human_size(size))
            self._start_sweeper()
            return entry

    def _take(self, key: Hashable, pinned: bool) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.users += 1
            entry.last_used = self._clock()
            entry.pinned = entry.pinned or pinned
        return entry

    def _make_room(self, name: str, size: int) -> list[_Entry]:
        """Unload idle models, least recently used first, until `size` more fits the cap;
        called with the lock held. The unloaded entries are returned, to be let go of outside
        the lock."""
        cap = self.memory_bytes
        if cap is None:
            return []
        if size > cap:
            raise Unavailable(
                f"Model {name} needs about {human_size(size)}, more than LF_MODEL_MEMORY_GB "
                f"allows ({human_size(cap)}); raise the limit or give it a smaller n_ctx or "
                "n_parallel in extra_body"
            )
        held = sum(e.size for e in self._entries.values())
        held += sum(loading.size for loading in self._loading.values())
        idle = sorted(
            ((k, e) for k, e in self._entries.items() if e.users == 0 and not e.pinned),
            key=lambda pair: pair[1].last_used,
        )
        if held - sum(e.size for _, e in idle) + size > cap:  # refused: nothing is unloaded
            busy = ", ".join(
                f"{e.name} ({human_size(e.size)}, {'kept loaded' if e.pinned else 'in use'})"
                for e in self._entries.values()
                if e.users or e.pinned
            )
            raise Unavailable(
                f"Model {name} needs about {human_size(size)} and LF_MODEL_MEMORY_GB "
                f"({human_size(cap)}) is taken by models that cannot be unloaded now: "
                f"{busy or 'models being loaded'}; try again when one is idle"
            )
        evicted: list[_Entry] = []
        for key, entry in idle:
            if held + size <= cap:
                break
            del self._entries[key]
            held -= entry.size
            evicted.append(entry)
            log.info("Unloaded model %s to make room for %s", entry.name, name)
        return evicted

    def sweep(self) -> int:
        """Unload the models idle for `idle_ttl` seconds or more (not pinned); how many."""
        if self.idle_ttl is None:
            return 0
        now = self._clock()
        with self._lock:
            gone = [
                key
                for key, e in self._entries.items()
                if e.users == 0 and not e.pinned and now - e.last_used >= self.idle_ttl
            ]
            entries = [self._entries.pop(key) for key in gone]
        for entry in entries:
            log.info("Unloaded model %s after %.0f s idle", entry.name, now - entry.last_used)
        return len(entries)

    def loaded(self) -> list[Resident]:
        now = self._clock()
        with self._lock:
            entries = list(self._entries.values())
            return [
                Resident(
                    name=e.name,
                    path=e.path,
                    size_bytes=e.size,
                    pinned=e.pinned,
                    in_use=e.users,
                    loaded_at=e.loaded_at,
                    idle_seconds=0.0 if e.users else max(now - e.last_used, 0.0),
                    details=dict(e.details),
                )
                for e in sorted(entries, key=lambda e: e.loaded_at)
            ]

    def _start_sweeper(self) -> None:
        if self.idle_ttl is None:
            return
        with self._lock:
            if self._sweeper is not None or self._stop.is_set():
                return
            self._sweeper = threading.Thread(target=self._sweep_loop, name="lf-residents")
            self._sweeper.daemon = True
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        assert self.idle_ttl is not None
        every = min(SWEEP_EVERY, max(self.idle_ttl / 2, 0.5))
        while not self._stop.wait(every):
            try:
                self.sweep()
            except Exception:  # a log line, never a dead sweeper
                log.exception("Sweeping idle models failed")

    def close(self) -> None:
        """Stop the sweeper and let go of every model (freed with its last user)."""
        self._stop.set()
        with self._lock:
            self._entries.clear()
            sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.join(timeout=5)
