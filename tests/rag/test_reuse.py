"""The embedding cache: reuse by (embedder, exact text), bounded by bytes, least recently used
first out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llamafarm.rag.embedders.reuse import ReusingEmbedder, VectorCache


class Counting:
    """An embedder that remembers the texts it was asked to embed."""

    def __init__(self, tag: str = "a") -> None:
        self.tag = tag
        self.seen: list[str] = []

    name = "counting"
    dimension = 4

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.seen.extend(texts)
        return [[float(len(t)), 1.0, 0.5, -0.25] for t in texts]

    def fingerprint(self) -> str:
        return f"counting:{self.tag}"

    def check(self) -> None:
        pass


ENTRY = 4 * 4 + 100  # four float32 and the counted row overhead


def test_reuse_is_per_embedder_and_exact_text(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "cache.sqlite3", max_bytes=1 << 20)
    inner = Counting()
    first = ReusingEmbedder(inner, cache)
    vectors = first.embed(["alpha", "beta"])
    assert (first.reused, first.embedded) == (0, 2)

    again = ReusingEmbedder(inner, cache)
    assert again.embed(["beta", "alpha", "gamma", "alpha "]) == [
        vectors[1],
        vectors[0],
        [5.0, 1.0, 0.5, -0.25],
        [6.0, 1.0, 0.5, -0.25],
    ]
    assert (again.reused, again.embedded) == (2, 2)
    assert inner.seen == ["alpha", "beta", "gamma", "alpha "]

    other = ReusingEmbedder(Counting(tag="b"), cache)  # another model: nothing to reuse
    other.embed(["alpha"])
    assert (other.reused, other.embedded) == (0, 1)
    assert cache.size() == (5, 5 * ENTRY)
    for embedder in (first, again, other):
        embedder.close()


def test_the_least_recently_used_go_beyond_the_size(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "cache.sqlite3", max_bytes=3 * ENTRY)
    embedder = ReusingEmbedder(Counting(), cache)
    for text in ("one", "two", "three"):  # one by one: each used at its own time
        embedder.embed([text])
    embedder.embed(["one"])  # used again: "two" is now the least recently used
    embedder.embed(["four"])
    assert cache.size() == (3, 3 * ENTRY)
    inner = Counting()
    check = ReusingEmbedder(inner, cache)
    check.embed(["one", "two", "three", "four"])
    assert inner.seen == ["two"]
    embedder.close()
    check.close()


def test_size_zero_turns_reuse_off(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    inner = Counting()
    embedder = ReusingEmbedder(inner, VectorCache(path, max_bytes=0))
    embedder.embed(["one"])
    embedder.embed(["one"])
    assert (embedder.reused, embedder.embedded) == (0, 2)
    assert not path.exists()
