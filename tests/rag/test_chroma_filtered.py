"""ChromaStore's filtered search through the BM25 index's ids against Chroma's own `where`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamafarm.rag.filters import parse_filters
from llamafarm.rag.stores import ChromaStore, chroma
from llamafarm.rag.stores.lexical import LexicalIndex

FILTERS = [
    {"dataset": "d1"},
    {"dataset": {"$in": ["d2", "d3"]}, "page": {"$gte": 2}},
    {"file_hash": "h4"},
    {"$or": [{"dataset": "d1"}, {"page": 1}]},  # no indexed test: Chroma's where
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ChromaStore:
    store = ChromaStore(path=tmp_path_factory.mktemp("store"), collection_name="docs")
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((200, 16)).astype(np.float32)
    ids = [f"c{i:03d}" for i in range(200)]
    metadatas = [
        {"dataset": f"d{i % 5}", "file_hash": f"h{i % 11}", "page": i % 4} for i in range(200)
    ]
    store.upsert(ids, [f"chunk {i}" for i in range(200)], vectors.tolist(), metadatas)
    return store


def _search(
    store: ChromaStore, vector: list[float], raw: dict[str, object], **kw: object
) -> list[tuple[str, float, str]]:
    hits = store.search(vector, top_k=10, where=parse_filters(raw), **kw)  # type: ignore[arg-type]
    return [(hit.id, hit.score, hit.text) for hit in hits]


@pytest.mark.parametrize("raw", FILTERS)
@pytest.mark.parametrize("metric", [None, "l2"])
def test_a_search_among_the_indexs_ids_finds_what_where_finds(
    store: ChromaStore, raw: dict[str, object], metric: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = parse_filters(raw)
    with store._collection(write=False) as collection:
        passing = store._passing(collection, where)
    assert (passing is None) == ("$or" in raw)
    vector = np.random.default_rng(len(str(raw))).standard_normal(16).tolist()
    found = _search(store, vector, raw, metric=metric)
    monkeypatch.setattr(chroma, "FILTER_IDS", 0)  # every filter through Chroma's where
    expected = _search(store, vector, raw, metric=metric)
    assert [h[0] for h in found] == [h[0] for h in expected] and len(found) == 10
    assert [h[1] for h in found] == pytest.approx([h[1] for h in expected])
    assert [h[2] for h in found] == [h[2] for h in expected]


def test_a_filter_nothing_passes_finds_nothing(store: ChromaStore) -> None:
    assert _search(store, [0.1] * 16, {"dataset": "none"}) == []


def test_an_id_chroma_lacks_falls_back_to_where(store: ChromaStore, tmp_path: Path) -> None:
    """What a reader whose Chroma index is a write behind the BM25 file sees."""
    vector = [0.2] * 16
    expected = _search(store, vector, {"dataset": "d4"})
    lexical = LexicalIndex(store.path / f"{store.collection_name}.lexical.sqlite3")
    lexical.upsert(["ghost"], ["a chunk only the BM25 index has"], [{"dataset": "d4"}])
    try:
        assert _search(store, vector, {"dataset": "d4"}) == expected
    finally:
        lexical.delete(["ghost"])
