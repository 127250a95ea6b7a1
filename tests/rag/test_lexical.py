from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter, parse_filters
from llamafarm.rag.stores.lexical import MAX_QUERY_TERMS, LexicalIndex, query_terms

CORPUS = {
    "cats": "The cat sat on the mat. Cats like warm places and the cat sleeps.",
    "dogs": "The dog runs in the park. Dogs like long walks and the dog barks.",
    "rare": "A zygomorphic flower has one plane of symmetry, unlike the cat.",
    "birds": "Birds fly south in winter; the bird sings in the morning.",
}
META: dict[str, dict[str, MetadataValue]] = {
    "cats": {"source": "a.pdf", "page": 1},
    "dogs": {"source": "a.pdf", "page": 2},
    "rare": {"source": "b.pdf", "page": 1, "flag": True},
    "birds": {"source": "c.md", "lang": "en"},
}


@pytest.fixture
def index(tmp_path: Path) -> LexicalIndex:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert(list(CORPUS), list(CORPUS.values()), [META[k] for k in CORPUS])
    return index


def _ids(index: LexicalIndex, query: str, where: Filter | None = None) -> list[str]:
    return [hit.id for hit in index.search(query, top_k=10, where=where)]


def _integrity_check(path: Path) -> None:
    # Raises unless the FTS index holds exactly the postings of the content table.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


def test_a_rare_term_outranks_a_common_one(index: LexicalIndex) -> None:
    hits = index.search("cat zygomorphic", top_k=10)
    assert [hit.id for hit in hits] == ["rare", "cats"]
    assert all(hit.score > 0 for hit in hits)
    assert hits[0].score > hits[1].score
    assert hits[0].text == CORPUS["rare"]
    assert hits[0].metadata == {"source": "b.pdf", "page": 1, "flag": True}


def test_stemming_matches_other_forms_of_a_word(index: LexicalIndex) -> None:
    assert _ids(index, "running") == ["dogs"]
    assert _ids(index, "Flowers") == ["rare"]


def test_top_k_and_ties_break_by_id(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert(["b", "c", "a"], ["same words here"] * 3, [{}] * 3)
    assert [hit.id for hit in index.search("words", top_k=3)] == ["a", "b", "c"]
    # Equal scores at the cut: FTS5 keeps the first stored; the kept ones are in id order.
    assert [hit.id for hit in index.search("words", top_k=2)] == ["b", "c"]
    assert index.search("words", top_k=0) == []


def test_stopwords_are_dropped_unless_nothing_else_is_left(index: LexicalIndex) -> None:
    assert query_terms("The Cat and the CAT, the dog!") == ["cat", "dog"]
    assert query_terms("the and of") == ["the", "and", "of"]
    assert _ids(index, "the of the cat") == ["cats", "rare"]
    assert set(_ids(index, "the")) == set(CORPUS)
    assert len(query_terms(" ".join(f"w{i}" for i in range(1000)))) == MAX_QUERY_TERMS


def test_upserting_again_replaces_the_chunk(index: LexicalIndex) -> None:
    index.upsert(["cats"], [CORPUS["cats"]], [META["cats"]])
    assert index.count() == 4
    assert index.term_stats(["cat"]) == {"cat": 2}
    _integrity_check(index.path)

    index.upsert(["cats"], ["Kittens purr quietly."], [{"source": "z.pdf"}])
    assert index.count() == 4
    assert _ids(index, "kitten") == ["cats"]
    assert _ids(index, "mat") == []
    assert index.term_stats(["cat", "mat", "kitten"]) == {"cat": 1, "mat": 0, "kitten": 1}
    assert index.search("kitten", top_k=1)[0].metadata == {"source": "z.pdf"}
    _integrity_check(index.path)


def test_a_metadata_only_change_keeps_the_postings(index: LexicalIndex) -> None:
    index.upsert(["cats"], [CORPUS["cats"]], [{"source": "moved.pdf"}])
    hits = index.search("cat", top_k=10, where=parse_filters({"source": "moved.pdf"}))
    assert [hit.id for hit in hits] == ["cats"]
    _integrity_check(index.path)


def test_delete_removes_from_search_and_term_stats(index: LexicalIndex) -> None:
    assert index.delete(["rare", "unknown"]) == 1
    assert index.delete([]) == 0
    assert index.count() == 3
    assert _ids(index, "zygomorphic") == []
    assert _ids(index, "cat") == ["cats"]
    assert index.term_stats(["zygomorphic", "cat"]) == {"zygomorphic": 0, "cat": 1}
    _integrity_check(index.path)


def test_term_stats_stem_the_terms_and_key_them_as_given(index: LexicalIndex) -> None:
    stats = index.term_stats(["Running", "dogs", "e-mail", "unseen", "Running"])
    assert stats == {"Running": 1, "dogs": 1, "e-mail": 0, "unseen": 0}
    assert index.term_stats([]) == {}


def test_the_index_persists(index: LexicalIndex) -> None:
    reopened = LexicalIndex(index.path)
    assert reopened.exists
    assert reopened.count() == 4
    assert _ids(reopened, "zygomorphic") == ["rare"]


def test_reads_of_a_missing_index_create_nothing(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    assert not index.exists
    assert index.search("cat", top_k=5) == []
    assert index.count() == 0
    assert index.term_stats(["cat"]) == {"cat": 0}
    assert index.delete(["a"]) == 0
    assert not index.exists
    index.upsert([], [], [])
    assert not index.exists


def test_upsert_checks_lengths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        LexicalIndex(tmp_path / "x.sqlite3").upsert(["a"], [], [{}])


def test_filtered_search_ranks_among_the_chunks_that_pass(index: LexicalIndex) -> None:
    # The best match fails the filter: the filter must run before the limit, not after it.
    where = parse_filters({"source": {"$ne": "b.pdf"}})
    assert [hit.id for hit in index.search("zygomorphic cat", top_k=1, where=where)] == ["cats"]
    assert _ids(index, "cat dog bird", where=parse_filters({"page": {"$gte": 2}})) == ["dogs"]
    assert _ids(index, "cat", where=parse_filters({"flag": True})) == ["rare"]
    assert _ids(index, "cat", where=parse_filters({"flag": 1})) == []
    either = parse_filters({"$or": [{"lang": "en"}, {"page": 2}]})
    assert set(_ids(index, "the", where=either)) == {"birds", "dogs"}


@pytest.mark.parametrize(
    "query",
    [
        "",
        " ",
        '"',
        '""',
        "'",
        "AND OR NOT",
        "*",
        "cat*",
        "a:b",
        "text:cat",
        "(",
        ")",
        "NEAR(",
        "NEAR(cat dog, 2)",
        "cat^2",
        "-cat +dog",
        "{text}: cat",
        "\x00",
        "🐈🐕",
        "\uff43\uff41\uff54",
        "naïve café",
        "x" * 10_000,
        "cat " * 2_500,
        " ".join(f"word{i}" for i in range(2_000)),
    ],
)
def test_no_query_is_an_fts5_syntax_error(index: LexicalIndex, query: str) -> None:
    hits = index.search(query, top_k=5)
    assert isinstance(hits, list)


def test_queries_without_words_find_nothing(index: LexicalIndex) -> None:
    for query in ["", "  ", "*", '"', "(", "!?", "🐈"]:
        assert index.search(query, top_k=5) == []
    assert _ids(index, "CAT!!!") == ["cats", "rare"]


def test_diacritics_are_folded(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert(["fr"], ["Un café naïf"], [{}])
    assert [hit.id for hit in index.search("naif cafe", top_k=5)] == ["fr"]


def test_searches_run_while_another_thread_writes(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert(["seed"], ["alpha beta"], [{"n": -1}])
    errors: list[BaseException] = []
    done = threading.Event()
    seen: list[int] = []

    def write() -> None:
        try:
            for batch in range(20):
                ids = [f"d{batch}-{i}" for i in range(25)]
                index.upsert(ids, ["alpha gamma"] * 25, [{"n": batch}] * 25)
                if batch % 5 == 4:
                    index.delete(ids[:5])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                hits = index.search("alpha", top_k=1000, where=parse_filters({"n": {"$gte": -1}}))
                seen.append(len(hits))
                index.term_stats(["alpha"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert seen
    # Each search saw one committed state: the seed plus whole batches, minus whole deletes.
    assert all((n - 1) % 5 == 0 for n in seen)
    assert index.count() == 1 + 20 * 25 - 4 * 5
    assert len(index.search("alpha", top_k=1000)) == index.count()
    assert index.term_stats(["gamma"]) == {"gamma": 480}
    _integrity_check(index.path)


def test_drop_removes_every_file(index: LexicalIndex) -> None:
    with contextlib.closing(sqlite3.connect(index.path)) as reader:
        # An open connection keeps the -wal and -shm files in place.
        reader.execute("SELECT count(*) FROM chunks").fetchone()
        files = {p.name for p in index.path.parent.iterdir()}
        assert {"lexical.sqlite3-wal", "lexical.sqlite3-shm"} <= files
        index.drop()
        assert list(index.path.parent.iterdir()) == []
    assert not index.exists
    assert index.search("cat", top_k=5) == []
    index.upsert(["new"], ["a new cat"], [{}])
    assert _ids(index, "cat") == ["new"]
