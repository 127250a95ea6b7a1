"""Retrieval on the embedded stack and on the remote one (issue 20), same vectors, same queries.

    .venv/bin/python bench/remote_stack.py PATH_TO_BEIR_FOLDER [--limit N] [--cache DIR]
        [--postgres ADMIN_URL] [--repeat N]

    e.g. nice -n 10 .venv/bin/python bench/remote_stack.py /work/shared/data/scifact \\
        --cache /tmp/lf-remote-stack

`--lexical-only` compares the two BM25 indexes alone (minutes: no embedding, no Chroma).

Not part of `make bench`: it needs a BEIR folder (SciFact: 5,183 documents, 300 test queries) and
a PostgreSQL server (default: postgres@127.0.0.1:5432, where it makes and drops a database
`lf_scaleout_bench_*`); it starts `chroma run` itself on a free port, its files in the cache.

Each document is one chunk (`title`, a blank line, `text`), embedded once by the rag template's
embedder (all-MiniLM-L6-v2) and kept in the cache as `vectors-HASH.npy`. The chunks go into two
stores: an embedded ChromaStore (its BM25 index an FTS5 file beside it) and a ChromaStore on the
Chroma server with its BM25 index in PostgreSQL (`lexical_postings`), as `LF_CHROMA_URL` with a
PostgreSQL `LF_DATABASE_URL` makes them. Every test query runs through the retrieval strategies
below on each store, in this process (no HTTP: the two stacks differ only in the stores), with
its vector computed beforehand: `top_k=100` for nDCG@10 and Recall@100 (trec_eval's, as
`lf eval`), then `top_k=10` `--repeat` times for the latency of the store's work (p50, p95 of
every run). The question it answers: is hybrid nDCG@10 on the remote stack within 0.01 of the
embedded one, and what does a query cost there.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psycopg
import retrieval
from harness import free_port

from llamafarm.config.models import Database
from llamafarm.rag.beir import Beir, load_beir
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.embedders import UniversalEmbedder
from llamafarm.rag.evaluation import measure
from llamafarm.rag.retrieval import Search, Strategies
from llamafarm.rag.stores import ChromaClients, ChromaServer, ChromaStore
from llamafarm.rag.stores.bm25 import Lexical
from llamafarm.rag.stores.lexical import LexicalIndex
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.state import StateDB

STRATEGIES = {
    name: retrieval.STRATEGIES[name]
    for name in ("vector", "bm25", "hybrid_weighted", "hybrid_zscore", "hybrid_rrf")
}
"""bench/retrieval.py's strategies that read the store alone (no query rewriting)."""
BATCH = 256


def vectors(beir: Beir, cache: Path) -> np.ndarray:
    key = hashlib.sha256("\0".join(beir.corpus).encode()).hexdigest()[:12]
    path = cache / f"vectors-{key}.npy"
    if path.exists():
        return np.load(path)
    embedder = UniversalEmbedder({"model": "all-MiniLM-L6-v2"})
    started = time.perf_counter()
    texts = list(beir.corpus.values())
    found = np.asarray(
        [v for i in range(0, len(texts), BATCH) for v in embedder.embed(texts[i : i + BATCH])],
        dtype=np.float32,
    )
    print(f"embedded {len(texts)} documents in {time.perf_counter() - started:.0f} s")
    np.save(path, found)
    return found


@contextmanager
def chroma_server(folder: Path) -> Iterator[ChromaServer]:
    program = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = free_port()
    command = [program, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    with (folder.parent / "chroma.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    raise SystemExit("chroma run exited; see chroma.log") from None
                time.sleep(0.1)
        yield ChromaServer("127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def postgres(admin: str) -> Iterator[str]:
    name = f"lf_scaleout_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fill(store: ChromaStore, beir: Beir, found: np.ndarray) -> float:
    ids = list(beir.corpus)
    texts = list(beir.corpus.values())
    started = time.perf_counter()
    for i in range(0, len(ids), BATCH):
        store.upsert(
            ids[i : i + BATCH],
            texts[i : i + BATCH],
            found[i : i + BATCH].tolist(),
            [{"source": f"{d}.txt", "dataset": "documents"} for d in ids[i : i + BATCH]],
        )
    return time.perf_counter() - started


def run(
    store: ChromaStore,
    beir: Beir,
    queries: dict[str, list[float]],
    strategy: str,
    repeat: int,
) -> tuple[dict[str, list[str]], list[float]]:
    database = Database.model_validate(
        {
            "name": "main_db",
            "type": "ChromaStore",
            "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
            "retrieval_strategies": [{"name": strategy, **STRATEGIES[strategy], "default": True}],
        }
    )
    strategies = Strategies(database)
    models = ModelCache()
    search = Search(
        store=store,
        embedder=UniversalEmbedder({"model": "all-MiniLM-L6-v2"}),  # unused: vectors given
        strategy=lambda name: strategies.get(name, inner=True),
        reranker=models.reranker,
        _vectors=queries,
    )
    retriever = strategies.get(strategy)
    rankings = {
        qid: [h.id for h in retriever.retrieve(search, text, top_k=100)]
        for qid, text in beir.queries.items()
    }
    latencies = []
    for _ in range(repeat):
        for text in beir.queries.values():
            started = time.perf_counter()
            retriever.retrieve(search, text, top_k=10)
            latencies.append(time.perf_counter() - started)
    return rankings, latencies


def lexical_only(beir: Beir, admin: str, scratch: Path, repeat: int) -> None:
    """`--lexical-only`: the two BM25 indexes alone (no vectors, no Chroma), in minutes."""
    ids, texts = list(beir.corpus), list(beir.corpus.values())
    metadatas = [{"source": f"{d}.txt"} for d in ids]
    with postgres(admin) as url:
        state = StateDB(url)
        indexes: dict[str, Lexical] = {
            "fts5 file": LexicalIndex(scratch / "lexical.sqlite3"),
            "postgresql": PostgresLexicalIndex(state.engine, store="bench"),
        }
        print(f"{'index':<11} nDCG@10  Recall@100  store s  p50 ms  p95 ms")
        for name, index in indexes.items():
            started = time.perf_counter()
            for i in range(0, len(ids), BATCH):
                index.upsert(ids[i : i + BATCH], texts[i : i + BATCH], metadatas[i : i + BATCH])
            stored = time.perf_counter() - started
            rankings = {
                qid: [h.id for h in index.search(text, top_k=100)]
                for qid, text in beir.queries.items()
            }
            latencies = []
            for _ in range(repeat):
                for text in beir.queries.values():
                    started = time.perf_counter()
                    index.search(text, top_k=10)
                    latencies.append(time.perf_counter() - started)
            scores = measure(beir.qrels, rankings).values()
            ndcg = float(np.mean([s["ndcg_cut_10"] for s in scores]))
            recall = float(np.mean([s["recall_100"] for s in scores]))
            print(
                f"{name:<11} {ndcg:.4f}   {recall:.4f}     {stored:7.1f}  "
                f"{ms(latencies, 50):6.1f}  {ms(latencies, 95):6.1f}"
            )
        state.close()


def ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="BEIR folder, e.g. /work/shared/data/scifact")
    parser.add_argument("--limit", type=int, help="the first N test queries (load_beir's limit)")
    parser.add_argument("--cache", type=Path, help="where the vectors are kept between runs")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=3, help="latency runs of every query")
    parser.add_argument("--strategy", action="append", choices=list(STRATEGIES))
    parser.add_argument(
        "--lexical-only",
        action="store_true",
        help="compare the FTS5 file and the PostgreSQL BM25 index alone (no embedding)",
    )
    args = parser.parse_args()

    beir = load_beir(args.folder.resolve(), limit=args.limit)
    cache = (args.cache or Path(__file__).parent / ".cache" / "remote-stack").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    print(f"{len(beir.queries)} queries, {len(beir.corpus)} documents, cache in {cache}")
    if args.lexical_only:
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            lexical_only(beir, args.postgres, Path(scratch), args.repeat)
        return
    found = vectors(beir, cache)
    embedder = UniversalEmbedder({"model": "all-MiniLM-L6-v2"})
    texts = list(beir.queries.values())
    queries = dict(zip(texts, embedder.embed(texts), strict=True))

    results: dict[str, dict[str, tuple[dict[str, list[str]], list[float]]]] = {}
    with (
        tempfile.TemporaryDirectory(dir=cache) as scratch,
        chroma_server(Path(scratch) / "chroma") as server,
        postgres(args.postgres) as url,
    ):
        state = StateDB(url)
        clients = ChromaClients(lexical=state.engine)
        stacks = {
            "embedded": ChromaStore(path=Path(scratch) / "embedded", collection_name="beir"),
            "remote": ChromaStore(
                path=Path(scratch) / "unused",
                collection_name="bench.beir.documents",
                server=server,
                clients=clients,
            ),
        }
        for name, store in stacks.items():
            print(f"{name}: stored {len(beir.corpus)} chunks in {fill(store, beir, found):.1f} s")
        for name, store in stacks.items():
            results[name] = {
                strategy: run(store, beir, queries, strategy, args.repeat)
                for strategy in args.strategy or list(STRATEGIES)
            }
        clients.close()
        state.close()

    print("\nquality from top_k=100, latency of the store's work at top_k=10 (vectors given)")
    print(f"{'strategy':<16} {'stack':<9} nDCG@10  Recall@100  p50 ms  p95 ms")
    for strategy in args.strategy or list(STRATEGIES):
        ndcg: dict[str, float] = {}
        for stack, by_strategy in results.items():
            rankings, latencies = by_strategy[strategy]
            scores = measure(beir.qrels, rankings).values()
            ndcg[stack] = float(np.mean([s["ndcg_cut_10"] for s in scores]))
            recall = float(np.mean([s["recall_100"] for s in scores]))
            print(
                f"{strategy:<16} {stack:<9} {ndcg[stack]:.4f}   {recall:.4f}     "
                f"{ms(latencies, 50):6.1f}  {ms(latencies, 95):6.1f}"
            )
        delta = ndcg["remote"] - ndcg["embedded"]
        print(f"{'':<16} {'remote - embedded nDCG@10':<26} {delta:+.4f}")


if __name__ == "__main__":
    main()
