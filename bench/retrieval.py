"""Retrieval quality and latency of each retrieval strategy on a BEIR dataset, via a real server.

    .venv/bin/python bench/retrieval.py PATH_TO_BEIR_FOLDER [--strategy NAME ...] [--limit N]
        [--cache DIR]

    e.g. .venv/bin/python bench/retrieval.py /work/shared/data/scifact --limit 20

Not part of `make bench`: it needs a BEIR folder (`corpus.jsonl[.gz]`, `queries.jsonl`,
`qrels/test.tsv`), such as SciFact, whose licence keeps it out of this repository.

It starts `lf start` on a free port with its data in a cache folder, creates a project from the
`rag` template whose TextParser keeps each document whole, uploads every document as `{_id}.txt`
(`title`, a blank line, `text`) and processes the dataset; a rerun on the same cache skips all of
that. It then adds the retrieval strategies below to the database with PATCH and runs every test
query through `POST .../rag/query` twice per strategy: `top_k=100` for nDCG@10 and Recall@100,
then `top_k=10` for the latency, which is timed by the client over keep-alive HTTP. Last, with the
server stopped, it embeds each query in this process and queries the Chroma collection directly,
as the floor the server's `vector` strategy is compared to (row `raw chroma`: quality from 100
results, latency of embedding plus a 10-result query). Metrics are the mean over all test queries
of trec_eval's `ndcg_cut_10` and `recall_100`, as `lf eval` computes them; the folder is read
and ingested by `lf eval`'s own code (`llamafarm.rag.beir`, `llamafarm.cli.eval`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import free_port, wait_until_up

from llamafarm.cli.client import ApiClient
from llamafarm.cli.eval import ingest_beir
from llamafarm.rag.beir import Beir, load_beir
from llamafarm.rag.evaluation import measure

NAMESPACE, PROJECT, DATASET, DATABASE = "bench", "beir", "documents", "main_db"
CHUNK_SIZE = 20_000
"""Characters: above the longest SciFact document (10,128), so every document is one chunk."""
WARMUP = 3
STRATEGIES: dict[str, dict[str, Any]] = {
    "vector": {"type": "BasicSimilarityStrategy", "config": {}},
    "bm25": {"type": "HybridUniversalStrategy", "config": {"alpha": 0.0}},
    "hybrid_weighted": {
        "type": "HybridUniversalStrategy",
        "config": {"fusion": "weighted", "alpha": 0.5},
    },
    "hybrid_zscore": {
        "type": "HybridUniversalStrategy",
        "config": {"fusion": "zscore", "alpha": 0.5},
    },
    "hybrid_minmax": {
        "type": "HybridUniversalStrategy",
        "config": {"fusion": "minmax", "alpha": 0.5},
    },
    "hybrid_rrf": {"type": "HybridUniversalStrategy", "config": {"fusion": "rrf"}},
    "multi_query": {"type": "MultiQueryStrategy", "config": {"strategy": "hybrid_weighted"}},
}


def doc_ids(results: list[dict[str, Any]]) -> list[str]:
    """BEIR ids of the ranked results, each once (the first chunk of a document ranks it)."""
    ranked: dict[str, None] = {}
    for result in results:
        ranked.setdefault(str(result["metadata"]["source"]).removesuffix(".txt"))
    return list(ranked)


def ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def uploaded(http: httpx.Client, base: str) -> list[dict[str, Any]]:
    [dataset] = [d for d in http.get(f"{base}/datasets").json()["datasets"] if d["name"] == DATASET]
    details: list[dict[str, Any]] = dataset["details"]["file_details"]
    return details


def ingest(http: httpx.Client, base: str, beir: Beir) -> None:
    """Create the project and ingest the corpus (`lf eval`'s own ingestion), unless the cache
    already holds it all."""
    if http.get(base).status_code == 404:
        response = http.post(f"/v1/projects/{NAMESPACE}", json={"name": PROJECT})
        response.raise_for_status()
        config = response.json()["project"]["config"]
        [strategy] = config["rag"]["data_processing_strategies"]
        strategy["parsers"] = [
            {
                "type": "TextParser",
                "file_include_patterns": ["*.txt"],
                "config": {
                    "chunk_size": CHUNK_SIZE,
                    "chunk_overlap": 0,
                    "chunk_strategy": "sections",
                },
            }
        ]
        http.put(base, json={"config": config}).raise_for_status()
    started = time.perf_counter()
    ingest_beir(ApiClient(str(http.base_url), timeout=300), base, DATASET, beir)
    files = uploaded(http, base)
    chunks = sum(f["chunks"] or 0 for f in files)
    if len(files) != len(beir.corpus) or chunks != len(beir.corpus):
        raise SystemExit(f"{len(beir.corpus)} documents gave {len(files)} files, {chunks} chunks")
    print(f"corpus ready in {time.perf_counter() - started:.1f} s")


def configure(http: httpx.Client, base: str) -> None:
    strategies = [
        {"name": name, **spec, "default": name == "vector"} for name, spec in STRATEGIES.items()
    ]
    response = http.patch(
        f"{base}/rag/databases/{DATABASE}",
        json={"retrieval_strategies": strategies, "default_retrieval_strategy": "vector"},
    )
    if response.is_error:
        raise SystemExit(f"PATCH databases/{DATABASE}: {response.status_code} {response.text}")


def run_queries(
    http: httpx.Client, base: str, beir: Beir, strategy: str, top_k: int
) -> tuple[dict[str, list[str]], list[float]]:
    """Each query's ranked BEIR ids and the client-side latency, after a few untimed queries."""
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    warmup = [(None, text) for text in list(beir.queries.values())[:WARMUP]]
    for query_id, text in [*warmup, *beir.queries.items()]:
        body = {"query": text, "retrieval_strategy": strategy, "top_k": top_k}
        started = time.perf_counter()
        response = http.post(f"{base}/rag/query", json=body)
        elapsed = time.perf_counter() - started
        if response.is_error:
            raise SystemExit(f"{strategy}: {body} -> {response.status_code} {response.text}")
        if query_id is not None:
            rankings[query_id] = doc_ids(response.json()["results"])
            latencies.append(elapsed)
    return rankings, latencies


def raw_queries(store: Path, beir: Beir) -> tuple[dict[str, list[str]], list[float], list[float]]:
    """Embed each query in this process and query the Chroma collection directly (the server is
    up and idle, so both paths run on the same machine state): rankings, embed, store times."""
    import chromadb
    from chromadb.config import Settings

    from llamafarm.rag.embedders import UniversalEmbedder

    embedder = UniversalEmbedder({"model": "all-MiniLM-L6-v2"})
    collection = chromadb.PersistentClient(
        path=str(store), settings=Settings(anonymized_telemetry=False)
    ).get_collection("documents")
    for text in list(beir.queries.values())[:WARMUP]:
        warm = np.asarray(embedder.embed([text]), dtype=np.float32)
        collection.query(query_embeddings=warm, n_results=10)
    rankings: dict[str, list[str]] = {}
    embed_times: list[float] = []
    store_times: list[float] = []
    for query_id, text in beir.queries.items():
        started = time.perf_counter()
        embedded = embedder.embed([text])
        embed_times.append(time.perf_counter() - started)
        vectors = np.asarray(embedded, dtype=np.float32)
        started = time.perf_counter()
        collection.query(query_embeddings=vectors, n_results=10)
        store_times.append(time.perf_counter() - started)
        got = collection.query(query_embeddings=vectors, n_results=100, include=["metadatas"])
        rankings[query_id] = doc_ids([{"metadata": m} for m in (got["metadatas"] or [[]])[0]])
    return rankings, embed_times, store_times


def row(name: str, beir: Beir, rankings: dict[str, list[str]], latencies: list[float]) -> str:
    measured = measure(beir.qrels, rankings)
    n = np.mean([measured[q]["ndcg_cut_10"] for q in beir.queries])
    r = np.mean([measured[q]["recall_100"] for q in beir.queries])
    p50, p95 = ms(latencies, 50), ms(latencies, 95)
    return f"{name:<15} {n:7.3f}  {r:10.3f}  {p50:6.1f}  {p95:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="BEIR folder, e.g. /work/shared/data/scifact")
    parser.add_argument(
        "--strategy", action="append", choices=list(STRATEGIES), help="repeatable; default all"
    )
    parser.add_argument(
        "--limit",
        type=int,
        help="keep the first N test queries, and a corpus of the documents judged relevant for "
        "them plus the first documents of the corpus, N*10 documents in all",
    )
    parser.add_argument(
        "--cache", type=Path, help="data directory (default bench/.cache/retrieval-HASH)"
    )
    args = parser.parse_args()

    folder = args.folder.resolve()
    beir = load_beir(folder, limit=args.limit)
    key = hashlib.sha256(f"{folder}\0{args.limit}".encode()).hexdigest()[:12]
    data = (args.cache or Path(__file__).parent / ".cache" / f"retrieval-{key}").resolve()
    data.mkdir(parents=True, exist_ok=True)
    print(f"{len(beir.queries)} queries, {len(beir.corpus)} documents, data in {data}")

    port = free_port()
    lf = str(Path(sys.executable).parent / "lf")
    env = {
        **os.environ,
        "LF_DATA_DIR": str(data),
        "LF_VERSION_CHECK_URL": "",
        "LF_LOG_LEVEL": "warning",
    }
    with (data / "server.log").open("ab") as log:
        server = subprocess.Popen(
            [lf, "start", "--port", str(port), "--data-dir", str(data)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    results: dict[str, tuple[dict[str, list[str]], list[float], dict[str, list[str]]]] = {}
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        wait_until_up(http, server, data / "server.log")
        base = f"/v1/projects/{NAMESPACE}/{PROJECT}"
        ingest(http, base, beir)
        configure(http, base)
        for strategy in args.strategy or list(STRATEGIES):
            quality, _ = run_queries(http, base, beir, strategy, top_k=100)
            top10, latencies = run_queries(http, base, beir, strategy, top_k=10)
            results[strategy] = (quality, latencies, top10)
        store = data / "projects" / NAMESPACE / PROJECT / "stores" / DATABASE
        raw, embed_times, store_times = raw_queries(store, beir)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    totals = [e + s for e, s in zip(embed_times, store_times, strict=True)]

    print("\nquality from top_k=100, latency from top_k=10 (client side, keep-alive)")
    print(f"{'strategy':<15} nDCG@10  Recall@100  p50 ms  p95 ms")
    for strategy, (quality, latencies, _) in results.items():
        print(row(strategy, beir, quality, latencies))
    print(row("raw chroma", beir, raw, totals))
    for strategy, (quality, _, top10) in results.items():
        differ = sum(quality[q][:10] != top10[q][:10] for q in beir.queries)
        if differ:
            print(f"note: {strategy}: top 10 differs between top_k=100 and 10 for {differ} queries")
    print(
        f"raw embed p50 {ms(embed_times, 50):.1f} ms (p95 {ms(embed_times, 95):.1f}), "
        f"raw store query p50 {ms(store_times, 50):.1f} ms (p95 {ms(store_times, 95):.1f})"
    )
    if "vector" in results:
        server = ms(results["vector"][1], 50)
        overhead = server - ms(embed_times, 50) - ms(store_times, 50)
        print(
            f"server overhead (vector, top 10) p50: {server:.1f} ms - raw embed - raw store query"
            f" = {overhead:.1f} ms"
        )


if __name__ == "__main__":
    main()
