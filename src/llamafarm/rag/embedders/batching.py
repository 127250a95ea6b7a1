"""Merging embed() calls of concurrent threads into shared batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from llamafarm.rag.embedders.base import Embedder, WrappedEmbedder


@dataclass
class _Request:
    texts: list[str]
    vectors: list[list[float]] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BatchingEmbedder(WrappedEmbedder):
    """An embedder shared by the threads of a worker, which embeds their texts together.

    A worker processes several files at once; embedding each file's chunks alone gives small
    batches of mixed lengths. Here the first caller to find the model idle embeds everything
    waiting (its own texts and those of the other files), sorted by length by the embedder;
    callers that arrive meanwhile wait and are served by the next round. A failing round is
    retried per caller, so one file's bad input fails only that file.
    """

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: list[_Request] = []
        self._running = False

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        request = _Request(list(texts))
        with self._lock:
            self._waiting.append(request)
            while not request.done.is_set() and self._running:
                self._idle.wait()
            if request.done.is_set():
                return _result(request)
            self._running = True
            batch, self._waiting = self._waiting, []
        try:
            self._serve(batch)
        finally:
            with self._lock:
                self._running = False
                self._idle.notify_all()
        return _result(request)

    def _serve(self, batch: list[_Request]) -> None:
        try:
            vectors = self.inner.embed([text for r in batch for text in r.texts])
        except Exception:
            for request in batch:  # find whose texts failed
                try:
                    request.vectors = self.inner.embed(request.texts)
                except Exception as exc:
                    request.error = exc
                request.done.set()
            return
        start = 0
        for request in batch:
            request.vectors = vectors[start : start + len(request.texts)]
            start += len(request.texts)
            request.done.set()


def _result(request: _Request) -> list[list[float]]:
    if request.error is not None:
        raise request.error
    assert request.vectors is not None
    return request.vectors
