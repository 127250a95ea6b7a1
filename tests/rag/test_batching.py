from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from threading import Thread

import pytest

from llamafarm.errors import EmbedderUnavailable
from llamafarm.rag.embedders.batching import LANE_TEXTS, BatchingEmbedder


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


class Held(Recorder):
    """A Recorder whose calls holding a text in `holds` wait for that text's release; it counts
    the calls inside it at once."""

    def __init__(self, *holds: str) -> None:
        super().__init__()
        self.holds = {text: threading.Event() for text in holds}
        self.arrived = {text: threading.Event() for text in holds}
        self.inside = self.most = 0
        self.counting = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self.counting:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            for text in texts:
                if text in self.holds:
                    self.arrived[text].set()
                    assert self.holds[text].wait(5)
            return super().embed(texts)
        finally:
            with self.counting:
                self.inside -= 1


def _calls(shared: BatchingEmbedder, results: dict[str, object]) -> Callable[[str], Thread]:
    def start(text: str) -> Thread:
        thread = Thread(target=lambda: results.update({text: shared.embed([text])}))
        thread.start()
        return thread

    return start


def test_lanes_run_that_many_rounds_at_once_and_the_next_caller_waits() -> None:
    inner = Held("a", "b")
    shared = BatchingEmbedder(inner, lanes=2)
    results: dict[str, object] = {}
    start = _calls(shared, results)
    a, b = start("a"), start("b")
    assert inner.arrived["a"].wait(5) and inner.arrived["b"].wait(5)  # both inside at once
    c = start("c")
    while len(shared._waiting) < 1:  # no lane free: c waits
        threading.Event().wait(0.01)
    inner.holds["a"].set()
    inner.holds["b"].set()
    for thread in (a, b, c):
        thread.join(5)
    assert inner.most == 2
    assert sorted(map(tuple, inner.calls)) == [("a",), ("b",), ("c",)]
    assert results == {"a": [[1.0]], "b": [[1.0]], "c": [[1.0]]}
    assert shared.round_texts == LANE_TEXTS


def test_a_caller_whose_texts_are_in_another_lanes_round_waits_for_it() -> None:
    # Lanes 1 and 2 held by a and b; x and y queue; b's end lets x take a round of x and y,
    # held; a's end frees a lane while y's texts are in x's round and nothing waits: y must
    # wait for that round, not run rounds of nothing.
    inner = Held("a", "b", "x")
    shared = BatchingEmbedder(inner, lanes=2)
    results: dict[str, object] = {}
    start = _calls(shared, results)
    a, b = start("a"), start("b")
    assert inner.arrived["a"].wait(5) and inner.arrived["b"].wait(5)
    x = start("x")
    while len(shared._waiting) < 1:
        threading.Event().wait(0.01)
    y = start("y")
    while len(shared._waiting) < 2:
        threading.Event().wait(0.01)
    inner.holds["b"].set()
    assert inner.arrived["x"].wait(5)
    inner.holds["a"].set()
    a.join(5)
    y.join(0.2)  # a chance for y to run, wrongly, while x's round is held
    inner.holds["x"].set()
    for thread in (b, x, y):
        thread.join(5)
    assert [] not in inner.calls
    assert sorted(map(tuple, inner.calls)) == [("a",), ("b",), ("x", "y")]
    assert results == {"a": [[1.0]], "b": [[1.0]], "x": [[1.0]], "y": [[1.0]]}
