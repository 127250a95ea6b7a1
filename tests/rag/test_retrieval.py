"""Retrieval strategies on a small corpus where the right answer is known."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from llamafarm.config.models import Database
from llamafarm.errors import BadRequest, ConfigInvalid, RerankerUnavailable
from llamafarm.rag.cache import KEPT, ModelCache
from llamafarm.rag.embedders import UniversalEmbedder
from llamafarm.rag.filters import parse_filters
from llamafarm.rag.retrieval import Search, Strategies
from llamafarm.rag.retrieval.factors import RerankedStrategy
from llamafarm.rag.retrieval.multi_query import expand
from llamafarm.rag.retrieval.multi_turn import MultiTurnRAGStrategy
from llamafarm.rag.stores import ChromaClients, ChromaServer, ChromaStore, QdrantStore, VectorStore
from llamafarm.rag.stores.base import Hit
from llamafarm.rag.stores.bm25 import Lexical
from llamafarm.rag.stores.lexical import LexicalIndex
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.state import StateDB
from tests.rag.rerank_fixtures import build_tiny_reranker

CORPUS = {
    "dishwasher": ("The dishwasher shows E4417 when its drain hose is blocked.", "appliances", 1),
    "codes-1": ("Error codes tell developers what went wrong in a program.", "software", 2),
    "codes-2": ("An error code is a number that identifies a software failure.", "software", 3),
    "codes-3": ("Read the error code in the log before you restart the service.", "software", 4),
    "cat": ("The feline rested peacefully on the woven rug beside the fireplace.", "pets", 5),
    "rain": ("Heavy rainfall is expected across the northern regions tomorrow.", "weather", 6),
    "garden": ("Tomatoes need plenty of sunlight and regular watering in summer.", "garden", 7),
    "train": ("The night train to Vienna departs from platform four at eleven.", "travel", 8),
    "harbour": ("Fishing boats unload cheese and wine at the old harbour.", "travel", 9),
}
LEXICAL = "error code E4417"  # the rare code only BM25 weighs; vectors prefer "error code" texts
PARAPHRASE = "a cat sleeping on a carpet"  # no word in common with the cat's text
BOTH = "a cat sleeping on a carpet, E4417"


@pytest.fixture(scope="module")
def embedder() -> UniversalEmbedder:
    return UniversalEmbedder({"model": "all-MiniLM-L6-v2"})


STORE_KINDS = ["chroma", "chroma-server", "qdrant"]
"""Every test of a store runs on each: the embedded Chroma, a Chroma server with its BM25 index
in PostgreSQL (a cluster's stack), local Qdrant."""


def make_store(kind: str, path: Path, request: pytest.FixtureRequest) -> ChromaStore | QdrantStore:
    # A server's collections outlive a test: each test gets its own name.
    name = f"docs-{uuid.uuid4().hex[:8]}" if kind == "chroma-server" else "docs"
    if kind == "qdrant":
        return QdrantStore(path=path, collection_name=name)
    if kind == "chroma":
        return ChromaStore(path=path, collection_name=name)
    state: StateDB = request.getfixturevalue("postgres_state")
    clients = ChromaClients(lexical=state.engine)
    request.addfinalizer(clients.close)
    server = ChromaServer(*request.getfixturevalue("chroma_server"))
    return ChromaStore(path=path, collection_name=name, server=server, clients=clients)


def lexical_of(store: ChromaStore | QdrantStore) -> Lexical:
    """The store's BM25 index, reached around the store (to plant what a crash would leave)."""
    if isinstance(store, ChromaStore) and store.clients.lexical is not None:
        return PostgresLexicalIndex(store.clients.lexical, store=store.collection_name)
    return LexicalIndex(store.path / f"{store.collection_name}.lexical.sqlite3")


@pytest.fixture(params=STORE_KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: UniversalEmbedder
) -> ChromaStore | QdrantStore:
    store = make_store(request.param, tmp_path / "store", request)
    ids = list(CORPUS)
    texts = [CORPUS[i][0] for i in ids]
    metadatas: list[dict[str, Any]] = [
        {"source": f"{i}.txt", "topic": CORPUS[i][1], "page": CORPUS[i][2]} for i in ids
    ]
    # The pipeline's call; a new store has nothing to replace.
    store.replace({"dataset": "corpus"}, ids, texts, embedder.embed(texts), metadatas)
    return store


def database(*strategies: dict[str, Any]) -> Database:
    return Database.model_validate(
        {
            "name": "db",
            "type": "ChromaStore",
            "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
            "retrieval_strategies": list(strategies),
        }
    )


def run(
    store: VectorStore,
    embedder: UniversalEmbedder,
    query: str,
    strategy: str,
    *,
    db: Database | None = None,
    top_k: int = 3,
    models: ModelCache | None = None,
    **search: Any,
) -> list[str]:
    strategies = Strategies(db or database())
    context = Search(
        store=store,
        embedder=embedder,
        strategy=lambda name: strategies.get(name, inner=True),
        reranker=(models or ModelCache()).reranker,
        **search,
    )
    hits = strategies.get(strategy).retrieve(context, query, top_k=top_k)
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    return [hit.id for hit in hits]


def test_vectors_find_the_paraphrase_and_bm25_the_rare_code(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    assert run(store, embedder, PARAPHRASE, "basic")[0] == "cat"
    assert store.keyword_search(PARAPHRASE, top_k=3) == []
    assert run(store, embedder, PARAPHRASE, "hybrid", hybrid_alpha=0.0) == []

    assert run(store, embedder, LEXICAL, "basic")[0].startswith("codes")
    assert run(store, embedder, LEXICAL, "hybrid", hybrid_alpha=0.0)[0] == "dishwasher"


def test_hybrid_finds_both(store: VectorStore, embedder: UniversalEmbedder) -> None:
    for fusion in ("zscore", "minmax", "rrf"):
        db = database(
            {"name": "h", "type": "HybridUniversalStrategy", "config": {"fusion": fusion}}
        )
        assert set(run(store, embedder, BOTH, "h", db=db, top_k=2)) == {"cat", "dishwasher"}


def test_hybrid_alpha_one_is_the_vector_ranking(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    vector = run(store, embedder, BOTH, "basic", top_k=5)
    assert run(store, embedder, BOTH, "hybrid", top_k=5, hybrid_alpha=1.0) == vector


def test_candidates_come_without_texts_and_the_kept_ones_are_fetched(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    vector = embedder.embed([BOTH])[0]
    full = store.search(vector, top_k=4)
    bare = store.search(vector, top_k=4, texts=False)
    assert [(h.id, h.score) for h in bare] == [(h.id, h.score) for h in full]
    fetched = store.fetch([h.id for h in bare] + ["never-stored"])
    assert {i: (h.text, dict(h.metadata)) for i, h in fetched.items()} == {
        h.id: (h.text, dict(h.metadata)) for h in full
    }
    assert store.fetch([]) == {}


def hybrid(store: VectorStore, embedder: UniversalEmbedder, query: str, top_k: int) -> list[Hit]:
    strategies = Strategies(database())
    return strategies.get("hybrid").retrieve(
        Search(store=store, embedder=embedder), query, top_k=top_k
    )


def test_hybrid_hits_found_by_vectors_alone_carry_their_texts(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    # No word of the paraphrase is in the cat's text: only the vector side finds it, without
    # its text, which is read for the hits kept.
    cat = hybrid(store, embedder, PARAPHRASE, top_k=3)[0]
    assert (cat.id, cat.text, cat.metadata["topic"]) == ("cat", CORPUS["cat"][0], "pets")


class Removed:
    """A store whose chunk `gone` was removed by a write after a search found it."""

    def __init__(self, store: VectorStore, gone: str) -> None:
        self.store, self.gone = store, gone

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def fetch(self, ids: list[str]) -> dict[str, Hit]:
        return {i: hit for i, hit in self.store.fetch(ids).items() if i != self.gone}


def test_hybrid_fills_the_place_of_a_candidate_removed_since_its_search(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    ranked = [hit.id for hit in hybrid(store, embedder, PARAPHRASE, top_k=4)]
    assert ranked[0] == "cat"
    removed = cast(VectorStore, Removed(store, "cat"))
    assert [hit.id for hit in hybrid(removed, embedder, PARAPHRASE, top_k=3)] == ranked[1:]


def test_llamafarm_retriever_names_run_their_equivalents(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    db = database(
        {"name": "words", "type": "BM25Retriever", "config": {"top_k": 3}},
        {"name": "vector", "type": "VectorRetriever"},
        {"name": "both", "type": "HybridRetriever", "config": {"fusion_method": "rrf"}},
        {
            "name": "lf_hybrid",
            "type": "HybridUniversalStrategy",
            "config": {"fusion_method": "rrf"},
        },
        {
            "name": "factors",
            "type": "RerankedRetriever",
            "config": {"initial_k": 9, "final_k": 2, "strategy": "vector"},
        },
    )
    strategies = Strategies(db)
    strategies.check()
    assert run(store, embedder, LEXICAL, "words", db=db)[0] == "dishwasher"
    assert run(store, embedder, PARAPHRASE, "words", db=db) == []
    # No embedding: the BM25 index alone answers.
    no_model = Search(store=store, embedder=cast(Any, None))
    assert strategies.get("words").retrieve(no_model, LEXICAL, top_k=1)[0].id == "dishwasher"
    assert run(store, embedder, BOTH, "vector", db=db) == run(store, embedder, BOTH, "basic")
    for name in ("both", "lf_hybrid"):
        assert cast(Any, strategies.get(name)).config.fusion == "rrf"
        assert set(run(store, embedder, BOTH, name, db=db, top_k=2)) == {"cat", "dishwasher"}
    assert isinstance(strategies.get("factors"), RerankedStrategy)
    assert run(store, embedder, PARAPHRASE, "factors", db=db, top_k=2)[0] == "cat"


def test_filters_exclude_the_right_document(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    no_pets = parse_filters({"topic": {"$ne": "pets"}})
    assert "cat" not in run(store, embedder, PARAPHRASE, "basic", filters=no_pets)
    assert "cat" not in run(store, embedder, BOTH, "hybrid", filters=no_pets)
    only = parse_filters({"page": {"$gte": 2, "$lte": 3}})
    assert set(run(store, embedder, LEXICAL, "hybrid", filters=only)) == {"codes-1", "codes-2"}
    listed = parse_filters({"source": {"$in": ["rain.txt", "train.txt"]}})
    assert set(run(store, embedder, PARAPHRASE, "basic", filters=listed)) == {"rain", "train"}

    db = database(
        {
            "name": "f",
            "type": "MetadataFilteredStrategy",
            "config": {"filters": {"topic": "software"}},
        }
    )
    assert set(run(store, embedder, LEXICAL, "f", db=db)) == {"codes-1", "codes-2", "codes-3"}
    # The configured filters and the query's both hold.
    narrowed = parse_filters({"page": 4})
    assert run(store, embedder, LEXICAL, "f", db=db, filters=narrowed) == ["codes-3"]


def test_another_distance_metric_rescores(store: VectorStore, embedder: UniversalEmbedder) -> None:
    cosine = run(store, embedder, PARAPHRASE, "basic", top_k=3)
    for metric in ("l2", "ip"):
        assert run(store, embedder, PARAPHRASE, "basic", distance_metric=metric) == cosine


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_another_distance_metric_on_an_empty_collection_finds_nothing(
    tmp_path: Path, embedder: UniversalEmbedder, kind: str, request: pytest.FixtureRequest
) -> None:
    empty = make_store(kind, tmp_path / "empty", request)
    vector = embedder.embed([PARAPHRASE])[0]
    for metric in ("l2", "ip", "cosine"):
        assert empty.search(vector, top_k=3, metric=metric) == []


def test_multi_query_merges_and_deduplicates(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    db = database(
        {
            "name": "m",
            "type": "MultiQueryStrategy",
            "config": {"queries": [PARAPHRASE], "strategy": "hybrid", "expand": False},
        }
    )
    found = run(store, embedder, "E4417", "m", db=db, top_k=4)
    assert {"cat", "dishwasher"} <= set(found)
    assert len(found) == len(set(found)) == 4


def test_expansion_keeps_the_rare_words(store: VectorStore, embedder: UniversalEmbedder) -> None:
    context = Search(store=store, embedder=embedder)
    variants = expand(context, "what does the error code E4417 mean")
    assert variants[0] == "error code E4417 mean"
    assert "E4417" in variants[1] and "error" not in variants[1]


def test_reranking_reorders_candidates(
    tmp_path: Path, store: VectorStore, embedder: UniversalEmbedder
) -> None:
    cache, model = build_tiny_reranker(tmp_path / "hf")
    models = ModelCache(hf_cache=cache)
    db = database(
        {
            "name": "r",
            "type": "CrossEncoderRerankedStrategy",
            "config": {"model_name": model, "initial_k": 9, "strategy": "basic"},
        }
    )
    query = "heavy rainfall tomorrow, cheese"
    assert run(store, embedder, query, "basic")[0] == "rain"
    # The tiny cross-encoder scores shared known words: only "cheese" is one.
    assert run(store, embedder, query, "r", db=db, models=models)[0] == "harbour"


def test_a_missing_reranker_is_an_error_naming_it(
    tmp_path: Path, store: VectorStore, embedder: UniversalEmbedder
) -> None:
    db = database(
        {"name": "r", "type": "CrossEncoderRerankedStrategy", "config": {"model_name": "acme/nope"}}
    )
    with pytest.raises(RerankerUnavailable, match="acme/nope"):
        run(store, embedder, "x", "r", db=db, models=ModelCache(hf_cache=tmp_path))


def test_unknown_strategy_names_the_valid_ones() -> None:
    with pytest.raises(BadRequest, match="basic, hybrid, multi_query"):
        Strategies(database()).get("nope")


@pytest.mark.parametrize(
    ("strategies", "message"),
    [
        ([{"name": "a", "type": "HybridUniversalStrategy", "config": {"alpha": 2}}], "alpha"),
        ([{"name": "a", "type": "BasicSimilarityStrategy", "config": {"k": 1}}], "k"),
        ([{"name": "a", "type": "Nope"}], "unknown type"),
        (
            [{"name": "a", "type": "MultiQueryStrategy", "config": {"strategy": "zz"}}],
            "unknown strategy 'zz'",
        ),
        (
            [
                {"name": "a", "type": "MultiQueryStrategy", "config": {"strategy": "b"}},
                {
                    "name": "b",
                    "type": "CrossEncoderRerankedStrategy",
                    "config": {"strategy": "a", "model_name": "x/y"},
                },
            ],
            "a -> b -> a",
        ),
        (
            [
                {
                    "name": "a",
                    "type": "MetadataFilteredStrategy",
                    "config": {"filters": {"k": {"$x": 1}}},
                }
            ],
            r"\$x",
        ),
    ],
)
def test_bad_strategy_configs_are_reported(strategies: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        Strategies(database(*strategies)).check()


@pytest.mark.parametrize("wrapper", ["MultiQueryStrategy", "CrossEncoderRerankedStrategy"])
def test_a_default_that_runs_the_default_does_not_loop(
    tmp_path: Path, store: VectorStore, embedder: UniversalEmbedder, wrapper: str
) -> None:
    # Named "basic" like the built-in, default, and running "the default": its inner strategy
    # must be the plain vector search, not itself again.
    cache, model = build_tiny_reranker(tmp_path / "hf")
    config = {"model_name": model} if wrapper == "CrossEncoderRerankedStrategy" else {}
    db = database({"name": "basic", "type": wrapper, "config": config, "default": True})
    Strategies(db).check()
    found = run(store, embedder, PARAPHRASE, "basic", db=db, models=ModelCache(hf_cache=cache))
    assert len(found) == 3


def test_deletes_reach_lexical_rows_the_vectors_no_longer_have(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    # As if an earlier delete removed the vectors and died before the lexical rows went.
    assert isinstance(store, ChromaStore | QdrantStore)
    lexical = lexical_of(store)
    lexical.upsert(["ghost"], ["E4417 ghost row"], [{"source": "ghost.txt"}])
    assert [h.id for h in store.keyword_search("E4417", top_k=5)][:2] == ["ghost", "dishwasher"]
    assert store.delete({"source": "ghost.txt"}) == 0  # no vectors had it
    assert [h.id for h in store.keyword_search("E4417", top_k=5)] == ["dishwasher"]

    store.replace({"source": "dishwasher.txt"}, [], [], [], [])
    assert store.keyword_search("E4417", top_k=5) == []
    assert store.count({"source": "dishwasher.txt"}) == 0


def test_a_files_batches_go_in_one_by_one_and_out_by_id_or_all_but_some(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    """What the pipeline does with a streamed file: `upsert` per batch, then `delete` of the
    file's chunks not among the new ones, or `remove` of the batches when the run stops."""
    where = {"source": "big.txt"}
    texts = [f"Batch {i} of the glacier survey E99{i}" for i in range(4)]
    vectors = embedder.embed(texts)
    for i in range(4):
        store.upsert([f"b{i}"], [texts[i]], [vectors[i]], [where])
    assert store.count(where) == 4
    assert store.delete(where, keep=["b1", "b2"]) == 2
    assert store.count(where) == 2 and [h.id for h in store.keyword_search("E991", top_k=3)] == [
        "b1"
    ]
    store.remove(["b1", "b2"])
    assert store.count(where) == 0 and store.keyword_search("E992", top_k=3) == []
    assert store.count() == len(CORPUS)  # the other files' chunks stay


@pytest.mark.parametrize("store", ["chroma"], indirect=True)
def test_an_old_store_gets_its_lexical_index_once(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    # Only embedded Chroma stores predate the lexical index; Qdrant and server stores always
    # had one.
    assert isinstance(store, ChromaStore)
    index = store.path / f"{store.collection_name}.lexical.sqlite3"
    partial = index.with_name(index.name + ".partial")
    LexicalIndex(index).drop()
    # What an interrupted fill would have left: ignored and replaced.
    LexicalIndex(partial).upsert(["x"], ["E4417"], [{}])
    assert [h.id for h in store.keyword_search("E4417", top_k=5)] == ["dishwasher"]
    assert LexicalIndex(index).count() == len(CORPUS)
    assert not partial.exists()


def test_model_cache_keeps_the_recent_ones(tmp_path: Path) -> None:
    models = ModelCache(hf_cache=tmp_path)
    first = models.reranker({"model_name": "acme/r0"})
    assert models.reranker({"model_name": "acme/r0"}) is first
    for i in range(1, KEPT + 1):
        models.reranker({"model_name": f"acme/r{i}"})
    assert models.reranker({"model_name": "acme/r0"}) is not first


def test_reranked_strategy_weighs_its_factors(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    db = database(
        {
            "name": "by_length",
            "type": "RerankedStrategy",
            "config": {"initial_k": 9, "rerank_factors": {"similarity_weight": 0, "length": 1}},
        },
        {"name": "default_factors", "type": "RerankedStrategy", "config": {"final_k": 3}},
    )
    longest = max(CORPUS, key=lambda i: len(CORPUS[i][0]))
    assert run(store, embedder, PARAPHRASE, "by_length", db=db, top_k=1) == [longest]
    # By default the similarity dominates: the same best chunk as plain vector search.
    assert run(store, embedder, PARAPHRASE, "default_factors", db=db)[0] == "cat"


class Listed:
    """A first stage that returns fixed hits."""

    default_top_k = None

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        return self.hits[:top_k]


def test_recency_and_metadata_boosts_reorder_equal_hits(embedder: UniversalEmbedder) -> None:
    today = datetime.now(UTC).isoformat()
    hits = [
        Hit(id="old", text="x", metadata={"timestamp": "2001-01-01T00:00:00"}, score=0.5),
        Hit(id="new", text="x", metadata={"timestamp": today}, score=0.5),
        Hit(id="vip", text="x", metadata={"priority": "critical", "verified": True}, score=0.5),
    ]
    config = {"rerank_factors": {"recency": 0.5, "metadata_boost": 0.0}}
    by_date = RerankedStrategy(config, inner=Listed(hits))
    context = Search(store=cast(VectorStore, None), embedder=embedder)
    assert [h.id for h in by_date.retrieve(context, "q", top_k=3)] == ["new", "old", "vip"]
    by_meta = RerankedStrategy({"rerank_factors": {"metadata_boost": 0.5}}, inner=Listed(hits))
    ranked = by_meta.retrieve(context, "q", top_k=3)
    assert ranked[0].id == "vip" and all(0 <= h.score <= 1 for h in ranked)


def test_multi_turn_splits_a_compound_question(
    store: VectorStore, embedder: UniversalEmbedder
) -> None:
    db = database(
        {
            "name": "turns",
            "type": "MultiTurnRAGStrategy",
            "config": {"model_name": "qwen3:8b", "complexity_threshold": 30, "sub_query_top_k": 3},
        }
    )
    query = "When does the night train to Vienna leave? What do fishing boats unload?"
    strategy = MultiTurnRAGStrategy({"complexity_threshold": 30})
    assert strategy.sub_queries(query)[1:] == [
        "When does the night train to Vienna leave?",
        "What do fishing boats unload?",
    ]
    assert strategy.sub_queries("a short one") == ["a short one"]
    assert set(run(store, embedder, query, "turns", db=db, top_k=2)) == {"train", "harbour"}


def test_dump_compact_and_discard(
    store: ChromaStore | QdrantStore, embedder: UniversalEmbedder, request: pytest.FixtureRequest
) -> None:
    """What export, compact and a reindex ask of every store: each chunk with its vector, the
    space of deleted chunks given back, one collection removed and the store's others kept."""
    pages = list(store.dump(page=4))
    assert [len(p.ids) for p in pages][:2] == [4, 4]
    ids = [i for p in pages for i in p.ids]
    assert sorted(ids) == sorted(CORPUS)
    first = pages[0]
    assert first.vectors.shape == (4, 384) and first.vectors.dtype == np.float32
    at = first.ids.index("cat") if "cat" in first.ids else None
    if at is not None:
        assert first.texts[at] == CORPUS["cat"][0] and first.metadatas[at]["topic"] == "pets"
        assert np.allclose(first.vectors[at], embedder.embed([CORPUS["cat"][0]])[0], atol=1e-5)

    store.remove(["rain", "garden"])
    store.compact()
    assert store.count() == len(CORPUS) - 2
    assert store.keyword_search("cheese harbour", top_k=1)[0].id == "harbour"

    beside = make_store(request.node.callspec.params["store"], store.path, request)
    beside.collection_name += "-next"
    beside.upsert(["x"], ["Another collection's chunk."], embedder.embed(["x"]), [{"a": 1}])
    beside.discard()
    assert beside.count() == 0 and list(beside.dump()) == []
    assert store.count() == len(CORPUS) - 2  # the other collection stays
