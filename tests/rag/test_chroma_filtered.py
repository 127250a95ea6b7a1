"""ChromaStore's filtered search, from the embeddings the BM25 file keeps or among its ids,
against Chroma's own `where`."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from llamafarm.rag.filters import parse_filters
from llamafarm.rag.stores import ChromaStore, chroma
from llamafarm.rag.stores import lexical as lexical_module
from llamafarm.rag.stores.lexical import LexicalIndex, dequantize
from llamafarm.rag.stores.metrics import approximation_error, distances, norms

FILTERS = [
    {"dataset": "d1"},
    {"dataset": {"$in": ["d2", "d3"]}, "page": {"$gte": 2}},
    {"file_hash": "h4"},
    {"$or": [{"dataset": "d1"}, {"page": 1}]},  # no indexed test: Chroma's where
]
Found = list[tuple[str, float, str]]


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


def _lexical(store: ChromaStore) -> LexicalIndex:
    return LexicalIndex(store.path / f"{store.collection_name}.lexical.sqlite3")


def _search(store: ChromaStore, vector: list[float], raw: dict[str, object], **kw: object) -> Found:
    hits = store.search(vector, top_k=10, where=parse_filters(raw), **kw)  # type: ignore[arg-type]
    return [(hit.id, hit.score, hit.text) for hit in hits]


def _same(found: Found, expected: Found) -> None:
    assert [h[0] for h in found] == [h[0] for h in expected]
    assert [h[1] for h in found] == pytest.approx([h[1] for h in expected], abs=1e-6)
    assert [h[2] for h in found] == [h[2] for h in expected]


@pytest.mark.parametrize("raw", FILTERS)
@pytest.mark.parametrize("metric", [None, "l2"])
@pytest.mark.parametrize("texts", [True, False])
def test_each_way_finds_what_where_finds(
    store: ChromaStore,
    raw: dict[str, object],
    metric: str | None,
    texts: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = parse_filters(raw)
    assert where is not None
    indexed = "$or" not in raw
    assert (_lexical(store).vectors_where(where, limit=1000) is None) != indexed
    vector = np.random.default_rng(len(str(raw))).standard_normal(16).tolist()
    kept = _search(store, vector, raw, metric=metric, texts=texts)
    monkeypatch.setattr(chroma, "FILTER_VECTORS", 0)  # no kept embeddings: among the ids
    among = _search(store, vector, raw, metric=metric, texts=texts)
    monkeypatch.setattr(chroma, "FILTER_IDS", 0)  # Chroma's where
    expected = _search(store, vector, raw, metric=metric, texts=texts)
    assert len(expected) == 10
    _same(kept, expected)
    _same(among, expected)


def test_a_filter_nothing_passes_finds_nothing(store: ChromaStore) -> None:
    assert _search(store, [0.1] * 16, {"dataset": "none"}) == []


def test_an_id_chroma_lacks_falls_back_to_where(store: ChromaStore) -> None:
    """What a reader whose Chroma index is a write behind the BM25 file sees."""
    vector = [0.2] * 16
    expected = _search(store, vector, {"dataset": "d4"})
    lexical = _lexical(store)
    lexical.upsert(["ghost"], ["a chunk only the BM25 index has"], [{"dataset": "d4"}])
    try:
        _same(_search(store, vector, {"dataset": "d4"}), expected)
    finally:
        lexical.delete(["ghost"])


def test_embeddings_are_kept_replaced_and_removed_with_their_chunks(store: ChromaStore) -> None:
    lexical = _lexical(store)
    where = parse_filters({"file_hash": "h7"})
    assert where is not None
    kept = lexical.vectors_where(where, limit=100)
    assert kept is not None and len(kept[0]) == kept[1].shape[0] > 0 and kept[1].shape[1] == 16
    # An upsert without embeddings (a store that gives none) forgets the old ones: no search
    # may use a vector of another embedder.
    seq = int(kept[0][0])
    first, text, meta = lexical.rows([seq])[seq]
    lexical.upsert([first], [text], [meta])
    assert lexical.vectors_where(where, limit=100) is None
    store.upsert([first], [text], [np.ones(16).tolist()], [meta])
    again = lexical.vectors_where(where, limit=100)
    assert again is not None
    assert again[1][again[0].tolist().index(seq)].tolist() == pytest.approx([1.0] * 16)
    assert lexical.exact([seq])[1].tolist() == [[1.0] * 16]
    store.delete({"file_hash": "h7"})
    with contextlib.closing(sqlite3.connect(lexical.path)) as conn:
        orphans = conn.execute(
            "SELECT (SELECT count(*) FROM vectors WHERE seq NOT IN (SELECT seq FROM chunks))"
            " + (SELECT count(*) FROM compact WHERE seq NOT IN (SELECT seq FROM chunks))"
        ).fetchone()[0]
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM vectors),"
            " (SELECT count(*) FROM compact)"
        )
        assert orphans == 0 and len(set(counts.fetchone())) == 1
    emptied = lexical.vectors_where(where, limit=100)
    assert emptied is not None and len(emptied[0]) == 0 and lexical.rows([seq]) == {}


def test_a_bm25_file_filled_from_chroma_keeps_the_embeddings(tmp_path: Path) -> None:
    store = ChromaStore(path=tmp_path, collection_name="docs")
    vectors = np.eye(4, 16, dtype=np.float32)
    store.upsert(["a", "b", "c", "d"], ["w"] * 4, vectors.tolist(), [{"dataset": "x"}] * 4)
    _lexical(store).drop()  # a store from before the BM25 file: the next use fills it
    assert _search(store, vectors[2].tolist(), {"dataset": "x"})[0][0] == "c"
    kept = _lexical(store).vectors_where(parse_filters({"dataset": "x"}), limit=10)  # type: ignore[arg-type]
    assert kept is not None
    rows = _lexical(store).rows(kept[0].tolist())
    ids = [rows[seq][0] for seq in kept[0].tolist()]
    assert dict(zip(ids, kept[1].tolist(), strict=True))["c"] == pytest.approx(vectors[2].tolist())


def test_chunks_at_the_same_distance_are_ranked_by_id(tmp_path: Path) -> None:
    """The same chunk in several files has the same vector: of those tied at the cut, the
    first ids are kept, whichever rows the file holds first."""
    store = ChromaStore(path=tmp_path, collection_name="docs")
    rng = np.random.default_rng(5)
    ids = [f"c{i:02d}" for i in range(40)]
    vectors = rng.standard_normal((40, 16)).astype(np.float32)
    twins = [7, 31, 3, 22, 15, 38, 11]  # stored in this order, not by id
    vectors[twins] = vectors[0]
    order = [i for i in range(40) if i not in twins] + twins
    store.upsert(
        [ids[i] for i in order],
        [f"chunk {i}" for i in order],
        vectors[order].tolist(),
        [{"dataset": "x"}] * 40,
    )
    found = store.search(vectors[0].tolist(), top_k=5, where=parse_filters({"dataset": "x"}))
    assert [hit.id for hit in found] == ["c00", "c03", "c07", "c11", "c15"]
    assert len({round(hit.score, 6) for hit in found}) == 1


@pytest.mark.parametrize("space", ["cosine", "l2", "ip"])
def test_near_ties_int16_cannot_tell_apart_are_ranked_exactly(
    tmp_path: Path, space: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks whose distances differ below the compact copies' precision (made coarse here, as
    int8's: int16's error is too small to reorder distances float32 tells apart): the float32
    vectors decide."""
    monkeypatch.setattr(lexical_module, "QUANTUM", 127)
    store = ChromaStore(path=tmp_path, collection_name="docs", distance_function=space)
    rng = np.random.default_rng(8)
    base = rng.standard_normal(16).astype(np.float32)
    base *= 0.5 / np.linalg.norm(base)  # inner products under 1: scores not clipped
    vectors = base + rng.standard_normal((60, 16)).astype(np.float32) * 5e-4
    query = base + rng.standard_normal(16).astype(np.float32) * 1e-2
    far = rng.standard_normal((60, 16)).astype(np.float32)
    far *= 0.2 / np.linalg.norm(far, axis=1, keepdims=True)  # far in every space
    stored = np.vstack([vectors, far])
    ids = [f"c{i:03d}" for i in range(len(stored))]
    store.upsert(ids, ["w"] * len(ids), stored.tolist(), [{"dataset": "x"}] * len(ids))
    approximate = dequantize(*lexical_module._quantize(stored))[0]
    exact = distances(space, query, stored)
    assert (
        np.argsort(distances(space, query, approximate))[:5].tolist()
        != np.argsort(exact)[:5].tolist()
    )
    found = _search(store, query.tolist(), {"dataset": "x"})
    assert [hit[0] for hit in found[:5]] == [ids[i] for i in np.argsort(exact)[:5]]
    monkeypatch.setattr(chroma, "FILTER_VECTORS", 0)
    monkeypatch.setattr(chroma, "FILTER_IDS", 0)  # Chroma's where
    _same(found, _search(store, query.tolist(), {"dataset": "x"}))


@pytest.mark.parametrize("space", ["cosine", "l2", "ip"])
def test_approximation_error_bounds_the_int16_distances(space: str) -> None:
    rng = np.random.default_rng(9)
    for scale in (1e-30, 1e-6, 1.0, 300.0, 1e6):
        stored = (rng.standard_normal((500, 384)) * scale).astype(np.float32)
        stored[:100, 0] *= 1000  # an outlier in a vector makes its scale coarse
        stored[100:150] = stored[0] + stored[100:150] * 1e-3  # near the first
        query = (stored[0] + rng.standard_normal(384) * scale * 1e-2).astype(np.float32)
        approximate, moved = dequantize(*lexical_module._quantize(stored))
        assert (np.linalg.norm(approximate - stored, axis=1) <= moved).all()
        rough = distances(space, query, approximate)
        off = np.abs(distances(space, query, stored) - rough)
        error = approximation_error(space, query, rough, moved, norms(approximate))
        assert (off <= error).all()


def test_a_vector_int16_cannot_hold_is_found_another_way(tmp_path: Path) -> None:
    store = ChromaStore(path=tmp_path, collection_name="docs", distance_function="l2")
    vectors = np.eye(4, 16, dtype=np.float32)
    vectors[3] = 1e-35  # its scale would be below float32's normal numbers
    store.upsert(["a", "b", "c", "d"], ["w"] * 4, vectors.tolist(), [{"dataset": "x"}] * 4)
    assert _lexical(store).vectors_where(parse_filters({"dataset": "x"}), limit=10) is None  # type: ignore[arg-type]
    assert _search(store, [0.0] * 16, {"dataset": "x"})[0][0] == "d"


def test_a_bm25_file_from_before_int16_copies_gets_them_on_first_use(tmp_path: Path) -> None:
    store = ChromaStore(path=tmp_path, collection_name="docs")
    vectors = np.random.default_rng(4).standard_normal((30, 16)).astype(np.float32)
    ids = [f"c{i:02d}" for i in range(30)]
    store.upsert(ids, ["w"] * 30, vectors.tolist(), [{"dataset": "x"}] * 30)
    expected = _search(store, vectors[7].tolist(), {"dataset": "x"})
    before = _lexical(store).vectors_where(parse_filters({"dataset": "x"}), limit=100)  # type: ignore[arg-type]
    with contextlib.closing(sqlite3.connect(_lexical(store).path)) as conn:
        conn.executescript(
            "DROP TRIGGER compact_delete; DROP TABLE compact; PRAGMA user_version = 0;"
        )
    kept = _lexical(store).vectors_where(parse_filters({"dataset": "x"}), limit=100)  # type: ignore[arg-type]
    assert kept is not None and before is not None
    for made, filled in zip(before, kept, strict=True):
        assert np.array_equal(made, filled)
    _same(_search(store, vectors[7].tolist(), {"dataset": "x"}), expected)
