"""The SQLite BM25 index at scale, on small files: the ranking that reads only the rarer words'
chunks, filters on indexed keys, and the count that reads no rows, each against the plain way."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamafarm.errors import Unavailable
from llamafarm.rag.filters import matches, parse_filters
from llamafarm.rag.stores import lexical
from llamafarm.rag.stores.bm25 import query_terms
from llamafarm.rag.stores.lexical import LexicalIndex

WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> LexicalIndex:
    """300 chunks of words drawn so that w0 is in most chunks and w39 in few, as in prose."""
    rng = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    ids, texts, metas = [], [], []
    for i in range(300):
        ids.append(f"c{i:03d}")
        texts.append(" ".join(rng.choices(WORDS, weights, k=rng.randint(5, 30))))
        metas.append({"dataset": f"d{i % 7}", "file_hash": f"h{i % 13}", "page": i % 5})
    metas[5]["dataset"] = 3  # a number: no filter on the string "3" may match it
    index = LexicalIndex(tmp_path_factory.mktemp("lexical") / "scale.sqlite3")
    index.upsert(ids, texts, metas)
    return index


def _hits(
    index: LexicalIndex, query: str, top_k: int = 20, **kw: object
) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in index.search(query, top_k=top_k, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "query", ["w1 w30 w35", "w0 w2 w3 w39", "w5 w6 w7 w8 w9 w38", "w0 w1", "w39 w38"]
)
def test_ranking_among_the_rarer_words_scores_as_fts5(
    corpus: LexicalIndex, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    terms = query_terms(query)
    with contextlib.closing(sqlite3.connect(corpus.path)) as conn:
        frequencies = lexical._frequencies(conn, terms)
    rarest = min(terms, key=lambda term: (frequencies[term], term))
    full = dict(_hits(corpus, query, top_k=1000))
    holding = {hit.id for hit in corpus.search(rarest, top_k=1000)}
    monkeypatch.setattr(lexical, "CANDIDATE_POSTINGS", frequencies[rarest])
    sql, _ = lexical._ranking(terms, frequencies, top_k=20, where=None)
    assert sql == lexical._SEARCH_AMONG  # the narrowed path runs
    found = _hits(corpus, query)
    # The best 20 of the chunks holding the rarest word, each scored as the full query scores
    # it (the AND counts the rare word twice; the second count is taken off again).
    best = sorted((i for i in full if i in holding), key=lambda i: (-full[i], i))[:20]
    assert [id_ for id_, _ in found] == best
    assert [score for _, score in found] == pytest.approx([full[i] for i in best], rel=1e-12)


def test_the_narrowed_ranking_equals_the_full_one_when_the_rare_words_decide(
    corpus: LexicalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # w39 is rare and w0 in most chunks (its IDF near 0): the best chunks all hold w39.
    expected = _hits(corpus, "w0 w39", top_k=3)
    monkeypatch.setattr(lexical, "CANDIDATE_POSTINGS", 1)
    found = _hits(corpus, "w0 w39", top_k=3)
    assert [i for i, _ in found] == [i for i, _ in expected]
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], rel=1e-12)


@pytest.mark.parametrize(
    "raw",
    [
        {"dataset": "d3"},
        {"dataset": {"$in": ["d1", "d4", "nothing"]}},
        {"dataset": "d2", "page": {"$gte": 2}},
        {"$and": [{"file_hash": "h5"}, {"dataset": {"$ne": "d1"}}]},
        {"document_id": "none"},
        {"$or": [{"dataset": "d1"}, {"page": 4}]},  # no indexed test: the plain way
        {"dataset": {"$ne": "d3"}},
    ],
)
def test_filters_on_indexed_keys_find_what_the_filter_passes(
    corpus: LexicalIndex, raw: dict[str, object]
) -> None:
    where = parse_filters(raw)
    assert where is not None
    with contextlib.closing(sqlite3.connect(corpus.path)) as conn:
        rows = conn.execute("SELECT id, metadata FROM chunks").fetchall()
    passing = sorted(id_ for id_, meta in rows if matches(where, json.loads(meta)))
    ids = corpus.ids_where(where, limit=1000)
    if lexical.indexed_condition(where) is None:
        assert ids is None
    else:
        assert ids is not None and sorted(ids) == passing
    hits = corpus.search("w0 w1 w2 w20", top_k=500, where=where)
    assert sorted(hit.id for hit in hits) == [i for i in passing if i in _holding(corpus)]
    best = corpus.search("w0 w1 w2 w20", top_k=5, where=where)
    assert [(hit.id, hit.score) for hit in best] == [(hit.id, hit.score) for hit in hits[:5]]
    assert corpus.ids_where(where, limit=len(passing) - 1) is None if passing else True


def _holding(index: LexicalIndex) -> set[str]:
    return {hit.id for hit in index.search("w0 w1 w2 w20", top_k=1000)}


def test_the_string_3_never_matches_the_number_3(corpus: LexicalIndex) -> None:
    where = parse_filters({"dataset": "3"})
    assert where is not None
    assert corpus.ids_where(where, limit=10) == []
    assert corpus.search("w0 w1 w2", top_k=10, where=where) == []
    number = parse_filters({"dataset": 3})
    assert number is not None and corpus.ids_where(number, limit=10) is None  # not indexed
    assert [hit.id for hit in corpus.search("w0 w1 w2 w3 w4", top_k=10, where=number)] == ["c005"]


def test_the_count_is_fts5s_own_and_follows_every_write(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "count.sqlite3")
    assert index.count() == 0
    index.upsert(["a", "b", "c"], ["one", "two", "three"], [{}] * 3)
    index.upsert(["a", "d"], ["one again", "four"], [{"k": 1}, {}])  # a replaced, d added
    index.delete(["b"])
    index.delete_where({"k": 1})
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        rows = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert index.count() == rows == 2
    index.upsert([f"x{i}" for i in range(300)], ["word"] * 300, [{}] * 300)
    assert index.count() == 302  # past one byte of varint
    index.delete([f"x{i}" for i in range(300)])
    assert index.count() == 2


def test_an_older_file_gets_the_new_indexes(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "old.sqlite3")
    index.upsert(["a"], ["one"], [{"dataset": "d", "file_hash": "h", "document_id": "x"}])
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        # What a file of the version before holds: none of these.
        for drop in (
            "INDEX chunks_by_hash",
            "INDEX chunks_by_document",
            "TRIGGER vectors_delete",
            "TRIGGER compact_delete",
            "TABLE vectors",
            "TABLE compact",
        ):
            conn.execute(f"DROP {drop}")
        conn.execute("PRAGMA user_version = 0")
        conn.commit()
    where = parse_filters({"document_id": "x"})
    assert where is not None and index.ids_where(where, limit=5) == ["a"]
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"chunks_by_hash", "chunks_by_document", "vectors", "vectors_delete"} <= names
    assert {"compact", "compact_delete"} <= names


TRICKY = ["n", "ed", "sses", "ies", "", "a\x00b", "é dataset ü", "x" * 300, "3", "D6E0"]
"""Dataset names whose tags a stemmer or tokenizer could change or merge: hex ending in e, ed or
ss; an empty string; a NUL (SQLite's JSON functions end the string there); accents and spaces; a
long one; a digit; one spelled like a tag."""


def test_every_tag_is_one_token_for_one_value(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "tags.sqlite3")
    metas: list[dict[str, object]] = [{"dataset": name, "document_id": "doc"} for name in TRICKY]
    metas += [{"dataset": 3}, {}]  # no string: the key's letter alone
    ids = [f"c{i}" for i in range(len(metas))]
    index.upsert(ids, ["alpha beta"] * len(ids), metas)  # type: ignore[arg-type]
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        held = {row[0] for row in conn.execute("SELECT term FROM chunks_terms WHERE col = 'tags'")}
    wanted = {lexical.tag("dataset", name) for name in TRICKY} | {lexical.tag("document_id", "doc")}
    assert held == wanted | {"d", "f", "i"}
    for name, id_ in zip(TRICKY, ids, strict=False):
        where = parse_filters({"dataset": name})
        assert where is not None
        assert [hit.id for hit in index.search("alpha", top_k=50, where=where)] == [id_], name
    both = parse_filters({"dataset": {"$in": ["n", "ed"]}})
    assert both is not None
    assert sorted(hit.id for hit in index.search("beta", top_k=50, where=both)) == ["c0", "c1"]


def test_a_word_spelled_like_a_tag_is_only_text(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "words.sqlite3")
    spelled = lexical.tag("dataset", "x")
    index.upsert(
        ["tagged", "says"],
        ["alpha", f"alpha {spelled}"],
        [{"dataset": "x"}, {"dataset": "y"}],
    )
    assert [hit.id for hit in index.search(spelled, top_k=5)] == ["says"]
    assert index.term_stats([spelled]) == {spelled: 1}
    x = parse_filters({"dataset": "x"})
    assert x is not None and index.search(spelled, top_k=5, where=x) == []


def test_a_chunk_moved_to_another_dataset_is_found_there(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "moved.sqlite3")
    index.upsert(["a", "b"], ["alpha", "alpha"], [{"dataset": "x"}, {"dataset": "x"}])
    index.upsert(["a"], ["alpha"], [{"dataset": "y", "page": 2}])
    x, y = parse_filters({"dataset": "x"}), parse_filters({"dataset": "y"})
    assert x is not None and y is not None
    assert [hit.id for hit in index.search("alpha", top_k=5, where=x)] == ["b"]
    assert [hit.id for hit in index.search("alpha", top_k=5, where=y)] == ["a"]
    index.delete(["a"])
    assert index.search("alpha", top_k=5, where=y) == []
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize("raw", [{"dataset": "d2"}, {"dataset": "d2", "page": {"$gte": 1}}])
def test_a_filtered_score_is_the_unfiltered_score(
    corpus: LexicalIndex, raw: dict[str, object]
) -> None:
    """The tag a filter matches adds nothing to a chunk's score, in either way of filtering."""
    where = parse_filters(raw)
    assert where is not None
    unfiltered = dict(_hits(corpus, "w1 w30 w35 w0", top_k=1000))
    filtered = _hits(corpus, "w1 w30 w35 w0", top_k=1000, where=where)
    assert filtered
    assert all(score == pytest.approx(unfiltered[id_], rel=1e-12) for id_, score in filtered)


# The full-text index of the version before tags, as that version made it.
_BEFORE_TAGS = """
CREATE TABLE chunks (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, metadata TEXT NOT NULL
);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, content='chunks', content_rowid='seq', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE chunks_terms USING fts5vocab(chunks_fts, row);
CREATE TRIGGER chunks_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER chunks_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER chunks_update AFTER UPDATE OF text ON chunks
WHEN old.text IS NOT new.text BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
"""


def test_a_file_from_before_tags_gets_them_once(corpus: LexicalIndex, tmp_path: Path) -> None:
    old = LexicalIndex(tmp_path / "old.sqlite3")
    with contextlib.closing(sqlite3.connect(corpus.path)) as conn:
        rows = conn.execute("SELECT id, text, metadata FROM chunks ORDER BY seq").fetchall()
    with contextlib.closing(sqlite3.connect(old.path)) as conn:
        conn.executescript(_BEFORE_TAGS)
        conn.executemany("INSERT INTO chunks (id, text, metadata) VALUES (?, ?, ?)", rows)
        conn.commit()
    for raw in (None, {"dataset": "d2"}, {"dataset": "d2", "page": 1}, {"page": 3}):
        where = None if raw is None else parse_filters(raw)
        for query in ("w1 w30 w35", "w0 w2 w3 w39"):
            assert _hits(old, query, where=where) == _hits(corpus, query, where=where)
    with contextlib.closing(sqlite3.connect(old.path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
    old.delete(["c001"])
    assert old.count() == len(rows) - 1


@contextlib.contextmanager
def _converting(path: Path) -> Iterator[sqlite3.Connection]:
    """A file of the version before tags, held as the process converting it holds it."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as converting:
        converting.execute("PRAGMA journal_mode = WAL")  # as every file this index made
        converting.executescript(_BEFORE_TAGS)
        converting.execute("BEGIN IMMEDIATE")
        yield converting


def test_a_search_during_the_conversion_is_told_to_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = LexicalIndex(tmp_path / "old.sqlite3")
    with _converting(old.path) as converting:
        monkeypatch.setattr(lexical, "BUSY_TIMEOUT_S", 0.05)
        with pytest.raises(Unavailable, match="being converted"):
            old.search("alpha", top_k=5)
        converting.execute("COMMIT")
    assert old.search("alpha", top_k=5) == []


def test_a_write_waits_for_the_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = LexicalIndex(tmp_path / "old.sqlite3")
    monkeypatch.setattr(lexical, "BUSY_TIMEOUT_S", 0.05)
    with _converting(old.path) as converting:
        writing = threading.Thread(target=old.upsert, args=(["a"], ["alpha"], [{"dataset": "x"}]))
        writing.start()
        writing.join(0.5)
        assert writing.is_alive()  # still waiting, well past BUSY_TIMEOUT_S
        converting.execute("COMMIT")
    writing.join(10)
    assert [hit.id for hit in old.search("alpha", top_k=5)] == ["a"]
