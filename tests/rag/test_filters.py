from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from llamafarm.documents import MetadataValue
from llamafarm.errors import BadRequest
from llamafarm.rag.filters import (
    All,
    AnyOf,
    Condition,
    combine,
    matches,
    parse_filters,
    to_chroma,
    to_sql,
)

QUOTED = 'we"ird.key'
BACKSLASH = "back\\slash"
CHUNKS: dict[str, dict[str, MetadataValue]] = {
    "c0": {"source": "a.pdf", "page": 1, "lang": "en", "flag": True},
    "c1": {"source": "a.pdf", "page": 2, "lang": "de", "flag": False},
    "c2": {"source": "b.pdf", "page": 3, "lang": "en", "score": 0.5},
    "c3": {"source": "b.pdf", "page": 4.0, "flag": 1},
    "c4": {"source": "c.md", "page": 5, "lang": "fr", "flag": 0},
    "c5": {"source": "c.md", "dataset": "x", QUOTED: "q", "we": "decoy"},
    "c6": {"dataset": "y", "page": "7", BACKSLASH: 1},
    "c7": {"dataset": "x", "page": -1, "lang": "en", "score": 2},
    "c8": {"source": "a.pdf", "page": 10, "score": 1.0, "flag": True},
    "c9": {"other": "ünïcode"},
}
EVERY = set(CHUNKS)

# Each filter with the chunks it must select; Chroma, SQLite and Python must all agree.
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"source": "a.pdf"}, {"c0", "c1", "c8"}),
    ({"source": {"$eq": "b.pdf"}}, {"c2", "c3"}),
    ({"page": {"$gte": 2, "$lt": 5}}, {"c1", "c2", "c3"}),
    ({"page": {"$gt": 0}}, {"c0", "c1", "c2", "c3", "c4", "c8"}),
    ({"page": {"$lte": -1}}, {"c7"}),
    ({"page": {"$lt": 2.5}}, {"c0", "c1", "c7"}),
    ({"page": {"$lte": 2.5}}, {"c0", "c1", "c7"}),
    ({"page": {"$gte": 1.5}}, {"c1", "c2", "c3", "c4", "c8"}),
    ({"page": {"$gt": 1.5}}, {"c1", "c2", "c3", "c4", "c8"}),
    ({"page": {"$gt": -1.5}}, {"c0", "c1", "c2", "c3", "c4", "c7", "c8"}),
    ({"page": {"$gte": -0.5}}, {"c0", "c1", "c2", "c3", "c4", "c8"}),
    ({"page": {"$lte": -0.5}}, {"c7"}),
    ({"page": {"$lt": -1.5}}, set()),
    ({"page": 1.5}, set()),
    ({"page": {"$ne": 1.5}}, EVERY),
    ({"page": {"$in": [1.5, 2.0]}}, {"c1"}),
    ({"page": {"$in": [1.5, 2.0, 1]}}, {"c0", "c1"}),
    ({"page": {"$nin": [2.5, 3]}}, EVERY - {"c2"}),
    ({"page": {"$nin": [0.5, 4.5]}}, EVERY),
    ({"page": 4}, {"c3"}),
    ({"page": 4.0}, {"c3"}),
    ({"page": "7"}, {"c6"}),
    ({"page": {"$ne": 7}}, EVERY),
    ({"dataset": {"$in": ["x", "y"]}}, {"c5", "c6", "c7"}),
    ({"lang": {"$ne": "de"}}, EVERY - {"c1"}),
    ({"lang": {"$nin": ["de", "fr"]}}, EVERY - {"c1", "c4"}),
    ({"missing": {"$nin": ["x"]}}, EVERY),
    ({"missing": "x"}, set()),
    ({"flag": True}, {"c0", "c8"}),
    ({"flag": False}, {"c1"}),
    ({"flag": 1}, {"c3"}),
    ({"flag": 0}, {"c4"}),
    ({"flag": {"$ne": True}}, EVERY - {"c0", "c8"}),
    ({"flag": {"$in": [True, 0]}}, {"c0", "c4", "c8"}),
    ({"flag": {"$nin": [False, 1]}}, EVERY - {"c1", "c3"}),
    ({"score": {"$in": [1, 0.5]}}, {"c2", "c8"}),
    ({"score": {"$in": [2.0]}}, {"c7"}),
    ({QUOTED: "q"}, {"c5"}),
    ({BACKSLASH: 1}, {"c6"}),
    ({"other": "ünïcode"}, {"c9"}),
    ({"$or": [{"source": "c.md"}, {"dataset": "y"}]}, {"c4", "c5", "c6"}),
    ({"$and": [{"source": "a.pdf"}, {"$or": [{"page": 1}, {"flag": True}]}]}, {"c0", "c8"}),
    ({"source": "a.pdf", "page": {"$gt": 1}}, {"c1", "c8"}),
    ({"$or": [{"lang": "en"}], "source": "b.pdf"}, {"c2"}),
    (
        {"$or": [{"lang": {"$ne": "en"}, "flag": {"$ne": True}}, {"score": 2}]},
        {"c1", "c3", "c4", "c5", "c6", "c7", "c9"},
    ),
]


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Collection, sqlite3.Connection]]:
    path: Path = tmp_path_factory.mktemp("filters")
    client = chromadb.PersistentClient(
        path=str(path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection("chunks", embedding_function=None)
    ids = list(CHUNKS)
    collection.add(
        ids=ids,
        embeddings=np.asarray([[float(i), 1.0] for i in range(len(ids))], dtype=np.float32),
        metadatas=[dict(m) for m in CHUNKS.values()],
    )
    with contextlib.closing(sqlite3.connect(path / "chunks.sqlite3")) as conn:
        conn.execute("CREATE TABLE chunks (id TEXT PRIMARY KEY, metadata TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO chunks VALUES (?, ?)", [(i, json.dumps(m)) for i, m in CHUNKS.items()]
        )
        yield collection, conn


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_chroma_sqlite_and_python_select_the_same_chunks(
    backends: tuple[Collection, sqlite3.Connection], raw: dict[str, Any], expected: set[str]
) -> None:
    collection, conn = backends
    f = parse_filters(raw)
    assert f is not None
    by_chroma = set(collection.get(where=to_chroma(f), include=[])["ids"])
    sql, params = to_sql(f, "metadata")
    by_sqlite = {row[0] for row in conn.execute(f"SELECT id FROM chunks WHERE {sql}", params)}
    by_python = {id_ for id_, metadata in CHUNKS.items() if matches(f, metadata)}
    assert by_chroma == expected
    assert by_sqlite == expected
    assert by_python == expected


def test_parse_normalizes() -> None:
    assert parse_filters(None) is None
    assert parse_filters({}) is None
    assert parse_filters({"source": "a.pdf"}) == Condition("source", "$eq", "a.pdf")
    assert parse_filters({"page": {"$gte": 2, "$lt": 5}}) == All(
        (Condition("page", "$gte", 2), Condition("page", "$lt", 5))
    )
    # Duplicates go; 1 and True stay apart although Python finds them equal.
    assert parse_filters({"n": {"$in": [1, True, 1.0, "1", 1]}}) == Condition(
        "n", "$in", (1, True, "1")
    )
    assert parse_filters({"$and": [{"a": 1}]}) == Condition("a", "$eq", 1)
    assert parse_filters({"$and": [{"a": 1}, {"$and": [{"b": 2}, {"c": 3}]}]}) == All(
        (Condition("a", "$eq", 1), Condition("b", "$eq", 2), Condition("c", "$eq", 3))
    )
    assert parse_filters({"$or": [{"a": 1}, {"$or": [{"b": 2}]}], "c": 3}) == All(
        (AnyOf((Condition("a", "$eq", 1), Condition("b", "$eq", 2))), Condition("c", "$eq", 3))
    )


def _nested(depth: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        raw = {"$or": [raw, {"b": 2}]}
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"page": {"$regex": "x"}}, r"metadata_filters\.page\.\$regex: unknown operator.*\$gte"),
        ({"page": {"gte": 1}}, r"unknown operator 'gte'.*never objects"),
        ({"page": {}}, r"metadata_filters\.page: expected a value or operators.*\$nin"),
        ({"$not": {"a": 1}}, r"metadata_filters\.\$not: unknown operator.*\$and/\$or"),
        ({"": 1}, r"metadata_filters: keys must be non-empty"),
        ({"page": [1, 2]}, r"metadata_filters\.page: expected a string.*got a list.*\$in"),
        ({"page": None}, r"metadata_filters\.page: .*got null"),
        ({"a.b": {"$eq": {"x": 1}}}, r'metadata_filters\["a\.b"\]\.\$eq: .*got an object'),
        ({"page": {"$in": "x"}}, r"page\.\$in: expected a non-empty list, got a string"),
        ({"page": {"$nin": []}}, r"page\.\$nin: expected a non-empty list, got a list"),
        ({"page": {"$in": [1, [2]]}}, r"page\.\$in\[1\]: expected a string.*got a list"),
        ({"page": {"$in": [None]}}, r"page\.\$in\[0\]: .*got null"),
        ({"page": {"$gt": "3"}}, r"page\.\$gt: expected a number, got a string"),
        ({"page": {"$lte": True}}, r"page\.\$lte: expected a number, got a boolean"),
        ({"page": float("nan")}, r"page: expected a string, a finite number"),
        ({"page": 2**70}, r"page: expected a string, a finite number"),
        ({"$and": []}, r"metadata_filters\.\$and: expected a non-empty list"),
        ({"$or": {"a": 1}}, r"metadata_filters\.\$or: expected a non-empty list.*object"),
        ({"$or": [{"a": 1}, {}]}, r"metadata_filters\.\$or\[1\]: expected a non-empty object"),
        ({"$and": [{"a": {"$foo": 1}}]}, r"metadata_filters\.\$and\[0\]\.a\.\$foo: unknown"),
        (_nested(9), r"deeper than 8"),
        ({f"k{i}": i for i in range(65)}, r"more than 64 conditions"),
        ({"a": {"$in": list(range(1025))}}, r"more than 1024 values"),
    ],
)
def test_parse_refuses_bad_filters(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_filters(raw)


def test_parse_refuses_a_filter_that_is_not_an_object() -> None:
    with pytest.raises(BadRequest, match="metadata_filters: expected an object, got a list"):
        parse_filters([{"a": 1}])  # type: ignore[arg-type]


def test_nesting_and_counts_at_the_limits_pass() -> None:
    assert parse_filters(_nested(8)) is not None
    assert parse_filters({f"k{i}": i for i in range(64)}) is not None


def test_combine_ands_the_given_filters() -> None:
    a, b, c = Condition("a", "$eq", 1), Condition("b", "$eq", 2), Condition("c", "$eq", 3)
    assert combine() is None
    assert combine(None, None) is None
    assert combine(None, a) == a
    assert combine(a, b) == All((a, b))
    assert combine(All((a, b)), c, None) == All((a, b, c))
    assert combine(AnyOf((a, b)), c) == All((AnyOf((a, b)), c))


def test_to_chroma_shapes() -> None:
    assert to_chroma(Condition("a", "$eq", 1)) == {"a": {"$eq": 1}}
    assert to_chroma(All((Condition("a", "$gte", 2), Condition("a", "$lt", 5)))) == {
        "$and": [{"a": {"$gte": 2}}, {"a": {"$lt": 5}}]
    }
    assert to_chroma(All((Condition("a", "$eq", 1),))) == {"a": {"$eq": 1}}
    # Chroma wants one type per list: a mixed list becomes one test per type.
    assert to_chroma(Condition("a", "$in", (1, "x", 2, True))) == {
        "$or": [{"a": {"$in": [1, 2]}}, {"a": {"$in": ["x"]}}, {"a": {"$in": [True]}}]
    }
    assert to_chroma(Condition("a", "$nin", (1, 2.0))) == {
        "$and": [{"a": {"$nin": [1]}}, {"a": {"$nin": [2.0]}}]
    }
    # Chroma 1.5 compares int values with a fractional bound truncated (2.5 as 2), so the
    # int neighbours of such a bound are settled explicitly.
    assert to_chroma(Condition("a", "$eq", 2.5)) == {
        "$and": [{"a": {"$eq": 2.5}}, {"a": {"$nin": [2, 3]}}]
    }
    assert to_chroma(Condition("a", "$gte", 2.5)) == {
        "$and": [{"$or": [{"a": {"$gte": 2.5}}, {"a": {"$gte": 3}}]}, {"a": {"$ne": 2}}]
    }


def test_to_sql_binds_every_value_and_names_only_the_column() -> None:
    f = parse_filters({"x'); DROP TABLE chunks; --": "'; --", "n": {"$in": [1, "b"]}})
    assert f is not None
    sql, params = to_sql(f, "c.metadata")
    assert "DROP" not in sql
    assert "--" not in sql
    assert params == ["x'); DROP TABLE chunks; --", "'; --", "n", "b", 1]
    with pytest.raises(ValueError, match="not a column name"):
        to_sql(f, "metadata; DROP TABLE chunks")


def test_matches_treats_missing_keys_as_unequal() -> None:
    f = parse_filters({"lang": {"$ne": "de"}, "tag": {"$nin": ["x"]}})
    assert f is not None
    assert matches(f, {})
    assert not matches(f, {"lang": "de"})
    ranged = parse_filters({"page": {"$gt": 1}})
    assert ranged is not None
    assert not matches(ranged, {})
    assert not matches(ranged, {"page": True})
