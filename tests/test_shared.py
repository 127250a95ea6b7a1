"""What a process loads once: by key, once however many callers ask at the same time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.rag.cache import ModelCache, lanes_for
from llamafarm.rag.embedders.batching import BatchingEmbedder
from llamafarm.rag.embedders.universal import (
    UniversalEmbedder,
    bundled_files,
    default_threads,
    onnx_session,
)
from llamafarm.rag.rerankers.cross_encoder import CrossEncoderReranker
from llamafarm.shared import Shared


def test_an_item_is_made_once_per_key_and_a_failure_keeps_nothing() -> None:
    shared, made = Shared(), []

    def make(value: str) -> str:
        made.append(value)
        time.sleep(0.05)  # callers that come meanwhile wait for this load
        return value

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: shared.load("a", lambda: make("a")), range(8)))
    assert results == ["a"] * 8 and made == ["a"]
    assert shared.load("b", lambda: make("b")) == "b" and made == ["a", "b"]

    def broken() -> str:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        shared.load("c", broken)
    assert "c" not in shared and shared.load("c", lambda: "c") == "c"


def test_close_lets_go_of_the_items_and_stops_the_pool() -> None:
    shared = Shared()
    shared.load("a", object)
    pool = shared.pool
    assert (
        pool is shared.pool and pool.submit(threading.get_ident).result() != threading.get_ident()
    )
    shared.close()
    assert "a" not in shared
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(int)


def test_embedders_of_one_model_cache_share_one_onnx_session() -> None:
    model, _ = bundled_files()
    models = ModelCache()
    for batch_size in (8, 16):  # two strategies, two embedders
        strategy = EmbeddingStrategy(
            name=f"e{batch_size}", type="UniversalEmbedder", config={"batch_size": batch_size}
        )
        models.embedder(strategy).embed(["hello"])
    threads = default_threads()
    assert ("onnx-session", model, threads) in models.shared
    session = onnx_session(models.shared, model, threads)
    assert onnx_session(models.shared, model, threads) is session
    assert onnx_session(Shared(), model, threads) is not session  # another process's own
    models.close()
    assert ("onnx-session", model, threads) not in models.shared


def test_a_worker_cache_runs_its_embedders_in_lanes_of_fewer_threads() -> None:
    assert [lanes_for(cpus) for cpus in (1, 2, 3, 16)] == [1, 2, 2, 2]
    strategy = EmbeddingStrategy(name="e", type="UniversalEmbedder", config={})
    api, worker = ModelCache(), ModelCache(lanes=2)
    queries, files = api.embedder(strategy), worker.embedder(strategy)
    assert isinstance(queries, BatchingEmbedder) and isinstance(files, BatchingEmbedder)
    assert (queries.lanes, files.lanes) == (1, 2)
    # The model runs a call on every CPU for the API, on its share of them in a lane.
    assert api.shared.threads is None
    assert worker.shared.threads == max(1, default_threads() // 2)
    assert isinstance(queries.inner, UniversalEmbedder)
    assert isinstance(files.inner, UniversalEmbedder)
    assert queries.inner.threads == default_threads()
    assert files.inner.threads == worker.shared.threads
    # A strategy that names its threads keeps them.
    named = EmbeddingStrategy(name="n", type="UniversalEmbedder", config={"threads": 3})
    assert worker.embedder(named).inner.threads == 3  # type: ignore[attr-defined]
    assert CrossEncoderReranker("m", shared=Shared(threads=1)).threads == 1
    for models in (api, worker):
        models.close()
