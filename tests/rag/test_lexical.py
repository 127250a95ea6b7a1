from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter, parse_filters
from llamafarm.rag.stores.bm25 import MAX_QUERY_TERMS, Lexical, query_terms
from llamafarm.rag.stores.lexical import LexicalIndex
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.state import StateDB

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


New = Callable[[], Lexical]


@pytest.fixture(params=["sqlite", "postgresql"])
def new(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[New]:
    """Makes empty indexes: FTS5 files, then rows in PostgreSQL (each test runs on both)."""
    if request.param == "sqlite":
        paths = (tmp_path / f"lexical{i}.sqlite3" for i in itertools.count())
        yield lambda: LexicalIndex(next(paths))
        return
    state: StateDB = request.getfixturevalue("postgres_state")
    stores = (f"store-{i}" for i in itertools.count())
    yield lambda: PostgresLexicalIndex(state.engine, store=next(stores))


@pytest.fixture
def index(new: New) -> Lexical:
    index = new()
    index.upsert(list(CORPUS), list(CORPUS.values()), [META[k] for k in CORPUS])
    return index


@pytest.fixture
def sqlite_index(tmp_path: Path) -> LexicalIndex:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert(list(CORPUS), list(CORPUS.values()), [META[k] for k in CORPUS])
    return index


def _ids(index: Lexical, query: str, where: Filter | None = None) -> list[str]:
    return [hit.id for hit in index.search(query, top_k=10, where=where)]


_WRONG_POSTINGS = """
SELECT c.id FROM lexical_chunks AS c
LEFT JOIN lexical_postings AS p ON p.store = c.store AND p.chunk_id = c.id
WHERE c.store = :store
GROUP BY c.id, c.length
HAVING coalesce(sum(p.tf), 0) <> c.length OR bool_or(p.length <> c.length)
UNION ALL
SELECT p.chunk_id FROM lexical_postings AS p
LEFT JOIN lexical_chunks AS c ON c.store = p.store AND c.id = p.chunk_id
WHERE p.store = :store AND c.id IS NULL
"""

# The store's kept counts, as its rows count them.
_COUNTS = """
SELECT (SELECT coalesce(max(chunks), 0) || ' ' || coalesce(max(tokens), 0)
        FROM lexical_stores WHERE store = :store),
       (SELECT count(*) || ' ' || coalesce(sum(length), 0)
        FROM lexical_chunks WHERE store = :store)
"""


def _integrity_check(index: Lexical) -> None:
    # Raises unless the FTS index holds exactly the postings of the content table; in
    # PostgreSQL, unless each chunk's postings add up to its length and carry it, each posting
    # has its chunk, and the store's kept counts are its rows'.
    if isinstance(index, PostgresLexicalIndex):
        with index.engine.connect() as conn:
            wrong = conn.execute(text(_WRONG_POSTINGS), {"store": index.store}).all()
            counts = conn.execute(text(_COUNTS), {"store": index.store}).one()
        assert wrong == []
        assert counts[0] == counts[1]
        return
    with contextlib.closing(sqlite3.connect(index.path)) as conn:
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


def test_a_rare_term_outranks_a_common_one(index: Lexical) -> None:
    hits = index.search("cat zygomorphic", top_k=10)
    assert [hit.id for hit in hits] == ["rare", "cats"]
    assert all(hit.score > 0 for hit in hits)
    assert hits[0].score > hits[1].score
    assert hits[0].text == CORPUS["rare"]
    assert hits[0].metadata == {"source": "b.pdf", "page": 1, "flag": True}


def test_stemming_matches_other_forms_of_a_word(index: Lexical) -> None:
    assert _ids(index, "running") == ["dogs"]
    assert _ids(index, "Flowers") == ["rare"]


def test_top_k_and_ties_break_by_id(new: New) -> None:
    index = new()
    index.upsert(["b", "c", "a"], ["same words here"] * 3, [{}] * 3)
    assert [hit.id for hit in index.search("words", top_k=3)] == ["a", "b", "c"]
    # Equal scores at the cut: FTS5 keeps the first stored, PostgreSQL the first ids; the
    # kept ones are in id order.
    kept = ["b", "c"] if isinstance(index, LexicalIndex) else ["a", "b"]
    assert [hit.id for hit in index.search("words", top_k=2)] == kept
    assert index.search("words", top_k=0) == []


def test_stopwords_are_dropped_unless_nothing_else_is_left(index: Lexical) -> None:
    assert query_terms("The Cat and the CAT, the dog!") == ["cat", "dog"]
    assert query_terms("the and of") == ["the", "and", "of"]
    assert _ids(index, "the of the cat") == ["cats", "rare"]
    assert set(_ids(index, "the")) == set(CORPUS)
    assert len(query_terms(" ".join(f"w{i}" for i in range(1000)))) == MAX_QUERY_TERMS


def test_upserting_again_replaces_the_chunk(index: Lexical) -> None:
    index.upsert(["cats"], [CORPUS["cats"]], [META["cats"]])
    assert index.count() == 4
    assert index.term_stats(["cat"]) == {"cat": 2}
    _integrity_check(index)

    index.upsert(["cats"], ["Kittens purr quietly."], [{"source": "z.pdf"}])
    assert index.count() == 4
    assert _ids(index, "kitten") == ["cats"]
    assert _ids(index, "mat") == []
    assert index.term_stats(["cat", "mat", "kitten"]) == {"cat": 1, "mat": 0, "kitten": 1}
    assert index.search("kitten", top_k=1)[0].metadata == {"source": "z.pdf"}
    _integrity_check(index)


def test_a_metadata_only_change_keeps_the_postings(index: Lexical) -> None:
    index.upsert(["cats"], [CORPUS["cats"]], [{"source": "moved.pdf"}])
    hits = index.search("cat", top_k=10, where=parse_filters({"source": "moved.pdf"}))
    assert [hit.id for hit in hits] == ["cats"]
    _integrity_check(index)


def test_delete_removes_from_search_and_term_stats(index: Lexical) -> None:
    assert index.delete(["rare", "unknown"]) == 1
    assert index.delete([]) == 0
    assert index.count() == 3
    assert _ids(index, "zygomorphic") == []
    assert _ids(index, "cat") == ["cats"]
    assert index.term_stats(["zygomorphic", "cat"]) == {"zygomorphic": 0, "cat": 1}
    _integrity_check(index)


def test_term_stats_stem_the_terms_and_key_them_as_given(index: Lexical) -> None:
    stats = index.term_stats(["Running", "dogs", "e-mail", "unseen", "Running"])
    assert stats == {"Running": 1, "dogs": 1, "e-mail": 0, "unseen": 0}
    assert index.term_stats([]) == {}


def test_the_index_persists(sqlite_index: Lexical) -> None:
    index = sqlite_index
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


def test_upsert_checks_lengths(new: New) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        new().upsert(["a"], [], [{}])


def test_filtered_search_ranks_among_the_chunks_that_pass(index: Lexical) -> None:
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
def test_no_query_is_an_fts5_syntax_error(index: Lexical, query: str) -> None:
    hits = index.search(query, top_k=5)
    assert isinstance(hits, list)


def test_queries_without_words_find_nothing(index: Lexical) -> None:
    for query in ["", "  ", "*", '"', "(", "!?", "🐈"]:
        assert index.search(query, top_k=5) == []
    assert _ids(index, "CAT!!!") == ["cats", "rare"]


def test_diacritics_are_folded(new: New) -> None:
    index = new()
    index.upsert(["fr"], ["Un café naïf"], [{}])
    assert [hit.id for hit in index.search("naif cafe", top_k=5)] == ["fr"]


def test_searches_run_while_another_thread_writes(new: New) -> None:
    index = new()
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
    _integrity_check(index)


def test_drop_removes_every_file(sqlite_index: Lexical) -> None:
    index = sqlite_index
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


def test_postgresql_ranks_and_scores_as_fts5(
    sqlite_index: LexicalIndex, postgres_state: StateDB
) -> None:
    """The PostgreSQL index computes FTS5's bm25() on its own statistics: same hits, same
    scores (words repeated and stemmed together count as FTS5 counts them)."""
    rows = PostgresLexicalIndex(postgres_state.engine, store="same")
    rows.upsert(list(CORPUS), list(CORPUS.values()), [META[k] for k in CORPUS])
    where = parse_filters({"source": {"$in": ["a.pdf", "c.md"]}})
    for query, filtered in [
        ("cat", None),
        ("the cat sleeps in the morning", None),
        ("dogs running runs park", None),
        ("bird winter cat", where),
        ("plane symmetry zygomorphic", None),
    ]:
        expected = sqlite_index.search(query, top_k=10, where=filtered)
        found = rows.search(query, top_k=10, where=filtered)
        assert [h.id for h in found] == [h.id for h in expected], query
        assert [h.score for h in found] == pytest.approx([h.score for h in expected]), query
        assert [h.metadata for h in found] == [h.metadata for h in expected]
    terms = ["Running", "dogs", "e-mail", "unseen"]
    assert rows.term_stats(terms) == sqlite_index.term_stats(terms)
