"""Merging embed() calls of concurrent threads into shared batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from llamafarm.rag.embedders.base import Embedder, WrappedEmbedder

ROUND_TEXTS = 256
"""Texts of waiting callers embedded in one round at most (a caller's texts are never split):
enough to sort into runs of like length (the embedder's runs are 2-32 texts). 256 against 64,
bench/ingest.py in turn, 5 pairs of runs: end to end faster in each (mean 28.4 against 31.6 s
on a quiet machine), less padding (1.3 % more tokens than one sorted call, against 4.3 %)."""
LANE_TEXTS = 32
"""Texts a round takes at most when rounds run side by side (`lanes` > 1): once nothing waits, a
lane idles until the others' last rounds end, about 1.4 s of one thread's work at 32 texts of
bench/ingest.py (~45 ms each) against 11 s at 256. Measured at 32 only."""


@dataclass
class _Request:
    texts: list[str]
    vectors: list[list[float]] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BatchingEmbedder(WrappedEmbedder):
    """An embedder shared by the threads of a worker, which embeds their texts together.

    A worker processes several files at once; embedding each file's chunks alone gives small
    batches of mixed lengths. Here a caller that finds a lane free embeds the callers
    waiting longest (its own texts or those of other files), whole, up to `round_texts` texts,
    sorted by length by the embedder; callers that arrive meanwhile wait and are served by a
    later round, by whichever of them finds a lane free. A failing round is retried per
    caller, so one file's bad input fails only that file.

    Rounds are bounded so that files finish a few at a time: their threads store them and
    start the next files while the model embeds the next round. One round of everything
    waiting (~280 chunks of 15 files in bench/ingest.py) finished its files all together, whose
    stores then ran one after another with the model idle after the last round.

    `lanes`: rounds run at once, each by its caller's thread. The worker runs one lane per CPU
    (up to `llamafarm.rag.cache.MAX_LANES`), its local models a call on its share of them: on
    2 cores, 2 lanes of 1 thread ingested bench/ingest.py's corpus in 26.6 s against 29.9 s for
    one lane of 2 threads (mean of 3 runs each, in turn). Traced, that one lane was busy 99 %
    of the span, but its rounds took 26 ms a text while nothing else ran and 30-43 ms while
    finished files were stored: a run's 2 threads wait on each other at every step, and a
    store's thread taking one core stalls both.
    """

    def __init__(self, inner: Embedder, *, round_texts: int | None = None, lanes: int = 1) -> None:
        super().__init__(inner)
        self.lanes = max(1, lanes)
        self.round_texts = round_texts or (ROUND_TEXTS if self.lanes == 1 else LANE_TEXTS)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: list[_Request] = []
        self._running = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        request = _Request(list(texts))
        with self._lock:
            self._waiting.append(request)
        while True:
            with self._lock:
                # Wait for a free lane, or while this request is in another lane's round
                # and none waits (a free lane then has nothing to serve).
                while not request.done.is_set() and (
                    self._running >= self.lanes or not self._waiting
                ):
                    self._idle.wait()
                if request.done.is_set():
                    return _result(request)
                self._running += 1
                batch = self._next_round()
            try:
                self._serve(batch)
            finally:
                with self._lock:
                    self._running -= 1
                    self._idle.notify_all()

    def _next_round(self) -> list[_Request]:
        """The requests waiting longest, whole, up to `round_texts` texts (at least one)."""
        taken, count = 0, 0
        while taken < len(self._waiting) and (
            taken == 0 or count + len(self._waiting[taken].texts) <= self.round_texts
        ):
            count += len(self._waiting[taken].texts)
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch

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
