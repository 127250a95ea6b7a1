from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from llamafarm.errors import EmbedderUnavailable
from llamafarm.rag.embedders.batching import BatchingEmbedder


class Recorder:
    """An embedder whose vectors are the texts' lengths; it records each call and can block."""

    name = "recorder"
    dimension = 1

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.entered.set()
        self.gate.wait(5)
        if any(t == "poison" for t in texts):
            raise EmbedderUnavailable("poison")
        self.calls.append(list(texts))
        return [[float(len(t))] for t in texts]

    def fingerprint(self) -> str:
        return "recorder"

    def check(self) -> None:
        pass


def test_callers_waiting_during_a_run_share_the_next_one() -> None:
    inner = Recorder()
    shared = BatchingEmbedder(inner)
    inner.gate.clear()
    results: dict[str, list[list[float]]] = {}

    def call(name: str, texts: list[str]) -> None:
        results[name] = shared.embed(texts)

    first = threading.Thread(target=call, args=("first", ["a"]))
    first.start()
    assert inner.entered.wait(5)  # the first call runs alone and blocks
    others = [
        threading.Thread(target=call, args=(f"t{i}", ["x" * (i + 1)] * (i + 1))) for i in range(3)
    ]
    for thread in others:
        thread.start()
    while len(shared._waiting) < 3:
        threading.Event().wait(0.01)
    inner.gate.set()
    for thread in [first, *others]:
        thread.join(5)

    assert inner.calls[0] == ["a"]
    assert len(inner.calls) == 2  # the three waiting callers went in one run
    assert sorted(inner.calls[1]) == sorted(["x"] + ["xx"] * 2 + ["xxx"] * 3)
    assert results["first"] == [[1.0]]
    for i in range(3):
        assert results[f"t{i}"] == [[float(i + 1)]] * (i + 1)


def test_a_failing_run_fails_only_the_caller_whose_texts_fail() -> None:
    inner = Recorder()
    shared = BatchingEmbedder(inner)
    inner.gate.clear()
    outcomes: dict[str, object] = {}

    def call(name: str, texts: list[str]) -> None:
        try:
            outcomes[name] = shared.embed(texts)
        except EmbedderUnavailable as exc:
            outcomes[name] = exc

    blocker = threading.Thread(target=call, args=("blocker", ["b"]))
    blocker.start()
    assert inner.entered.wait(5)
    good = threading.Thread(target=call, args=("good", ["ok"]))
    bad = threading.Thread(target=call, args=("bad", ["poison"]))
    good.start()
    bad.start()
    while len(shared._waiting) < 2:
        threading.Event().wait(0.01)
    inner.gate.set()
    for thread in (blocker, good, bad):
        thread.join(5)
    assert outcomes["good"] == [[2.0]]
    assert isinstance(outcomes["bad"], EmbedderUnavailable)


def test_single_calls_and_empty_input() -> None:
    shared = BatchingEmbedder(Recorder())
    assert shared.embed([]) == []
    assert shared.embed(["abc", "de"]) == [[3.0], [2.0]]
    assert (shared.name, shared.dimension, shared.fingerprint()) == ("recorder", 1, "recorder")
    with pytest.raises(EmbedderUnavailable):
        shared.embed(["poison"])


def test_rounds_take_the_longest_waiting_callers_whole_up_to_round_texts() -> None:
    inner = Recorder()
    shared = BatchingEmbedder(inner, round_texts=4)
    inner.gate.clear()
    results: dict[str, list[list[float]]] = {}

    def call(name: str, texts: list[str]) -> None:
        results[name] = shared.embed(texts)

    blocker = threading.Thread(target=call, args=("blocker", ["b"]))
    blocker.start()
    assert inner.entered.wait(5)
    # Queued in this order while the model is busy: 3, 2, 6 (more than a round) and 1 texts.
    sizes = {"p": 3, "q": 2, "r": 6, "s": 1}
    threads = []
    for name, size in sizes.items():
        threads.append(threading.Thread(target=call, args=(name, [name] * size)))
        threads[-1].start()
        while len(shared._waiting) < len(threads):
            threading.Event().wait(0.01)
    inner.gate.set()
    for thread in [blocker, *threads]:
        thread.join(5)

    # p alone (p and q would be 5 texts), q (q and r: 8), r whole although past the bound,
    # then s: each caller's texts in one round, in the order they came.
    assert inner.calls == [["b"], ["p"] * 3, ["q"] * 2, ["r"] * 6, ["s"]]
    for name, size in sizes.items():
        assert results[name] == [[1.0]] * size
