"""A million chunks in one database: insert rate, disk, memory, query latency, delete time.

    nice -n 10 .venv/bin/python bench/scale.py --data DIR [--sizes 10000 100000 1000000]
        [--queries 50] [--seed 7] [--keep]

Not part of `make bench`: at 1M it takes tens of minutes and about 15 GB of disk. DIR is made,
or holds an earlier run's database (same `--seed`), which is grown; it is removed at the end
unless `--keep`.

It loads generated chunks into ONE ChromaStore database of a project made from the `rag`
template, through the pipeline's own code: `create_store`, `record_write`, `chunk_id`, the
store's `upsert` (vectors and the BM25 index together) a file at a time, then its `delete` of
the file's chunks not among the new ones, as `ingest.pipeline.process_file` does after a file.
Nothing is parsed or embedded:

- Text: about 1,000 characters a chunk of pseudo-words drawn from a 50,000-word vocabulary by
  Zipf's law (s = 1), so a few words are in most chunks and most are rare, as in prose.
- Vectors: seeded normal vectors of 384 dimensions (the bundled embedder's), normalised.
- Metadata as the pipeline writes it: `chunk_index`, `page`, `document_id`, `source`,
  `file_hash` and `dataset`; a file has 50-150 chunks, and each file is in one of 100 datasets,
  so a filter on `dataset` keeps about 1 % of the chunks.

At each size in `--sizes` (the same database grown) it prints the insert rate since the last
size, the store's bytes on disk, this process's RSS, and p50/p95 of QUERIES queries of each
kind, through `llamafarm.rag.service.query` (what `POST .../rag/query` calls, minus HTTP) with
top_k 5: `vector` (the template's `basic_search`), `hybrid` (its default `hybrid_search`) and
both with `metadata_filters: {"dataset": ...}` (a key the BM25 index has an index on, which
both sides then use: `bm25.INDEXED_KEYS`). A query's text is 4 words of a stored chunk
(none of the 50 commonest) and its vector that chunk's plus noise, from an embedder that stands
in for the model. `reload` is the first query after another process's write (the generation
bump makes this process load the index again), `delete` the time to delete one file's chunks
by `{"dataset", "file_hash"}`, as `DELETE .../datasets/{dataset}/files/{hash}/chunks` does.
Figures in parentheses are this process's CPU time (all its threads; for the insert rate,
chunks per CPU-second): on a shared machine the wall-clock time includes waits for a core.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.documents import MetadataValue
from llamafarm.ingest.pipeline import BATCH, chunk_id
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.embedders.base import Embedder
from llamafarm.rag.index import index_folder, record_write
from llamafarm.rag.service import QueryOptions, query
from llamafarm.rag.stores import VectorStore, create_store, index_records
from llamafarm.rag.stores.chroma_clients import GENERATION

NAMESPACE, PROJECT = "bench", "scale"
DIMENSION = 384
VOCABULARY = 50_000
DATASETS = 100
CHUNK_WORDS = (110, 150)
"""Words a chunk: about 1,000 characters, the template's chunk_size."""
FILE_CHUNKS = (50, 150)
COMMON = 50
"""The commonest words, left out of queries as a user's stopwords would be."""
QUERY_WORDS = 4
QUERY_NOISE = 0.05
"""Per-dimension noise on a query's vector: its chunk stays the nearest, by a margin."""
KINDS = ("vector", "hybrid", "vector+filter", "hybrid+filter")


def vocabulary(seed: int) -> np.ndarray:
    """Distinct pseudo-words of 2-4 syllables, by rank (the first is the commonest)."""
    rng = np.random.default_rng(seed)
    onsets = [*"bdfgklmnprstvz", "br", "dr", "st", "tr", "ch", "sh"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    syllables = [o + v for o in onsets for v in vowels]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        parts = rng.integers(0, len(syllables), size=int(rng.integers(2, 5)))
        words["".join(syllables[p] for p in parts)] = None
    return np.array(list(words), dtype=object)


@dataclass(frozen=True)
class File:
    number: int
    dataset: str
    file_hash: str
    source: str
    texts: list[str]
    words: list[np.ndarray]
    """Each chunk's word ranks."""
    vectors: np.ndarray


class Corpus:
    """Files generated from `(seed, number)` alone: any one can be made again to query it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.words = vocabulary(seed)
        ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
        self.cumulative = np.cumsum(1 / ranks) / np.sum(1 / ranks)

    def file(self, number: int) -> File:
        rng = np.random.default_rng([self.seed, number])
        count = int(rng.integers(FILE_CHUNKS[0], FILE_CHUNKS[1] + 1))
        lengths = rng.integers(CHUNK_WORDS[0], CHUNK_WORDS[1] + 1, size=count)
        drawn = np.searchsorted(self.cumulative, rng.random(int(lengths.sum())))
        drawn = np.minimum(drawn, VOCABULARY - 1)
        words = np.split(drawn, np.cumsum(lengths)[:-1])
        texts = [" ".join(self.words[w].tolist()).capitalize() + "." for w in words]
        vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        file_hash = hashlib.sha256(f"{self.seed}/{number}".encode()).hexdigest()
        dataset = f"ds{int(rng.integers(0, DATASETS)):02d}"
        source = f"report-{number:07d}.pdf"
        return File(number, dataset, file_hash, source, texts, words, vectors)

    def question(self, rng: np.random.Generator, number: int) -> tuple[str, np.ndarray, File]:
        """A query from one chunk of file `number`: some of its rarer words, its vector moved."""
        found = self.file(number)
        chunk = int(rng.integers(0, len(found.texts)))
        rare = np.unique(found.words[chunk][found.words[chunk] >= COMMON])
        picked = rng.choice(rare, size=min(QUERY_WORDS, len(rare)), replace=False)
        vector = found.vectors[chunk] + rng.normal(0, QUERY_NOISE, DIMENSION).astype(np.float32)
        return " ".join(self.words[picked].tolist()), vector / np.linalg.norm(vector), found


class Vectors:
    """An embedder that returns the vectors the benchmark chose for its queries."""

    name = "bench-vectors"
    dimension = DIMENSION

    def __init__(self) -> None:
        self.known: dict[str, list[float]] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.known[text] for text in texts]

    def fingerprint(self) -> str:
        return self.name

    def check(self) -> None:
        return None


class BenchModels(ModelCache):
    """The server's model cache with the benchmark's vectors as every database's embedder."""

    def __init__(self, vectors: Vectors) -> None:
        super().__init__()
        self.vectors = vectors

    def embedder(self, strategy: EmbeddingStrategy) -> Embedder:
        return self.vectors


def store_file(store: VectorStore, found: File) -> None:
    """What `process_file` does with a file's chunks: upsert a batch at a time, then delete
    the file's chunks that are not among the new ones."""
    ids = [chunk_id(found.dataset, found.file_hash, "bench", i) for i in range(len(found.texts))]
    base: dict[str, MetadataValue] = {
        "document_id": found.file_hash,
        "source": found.source,
        "file_hash": found.file_hash,
        "dataset": found.dataset,
    }
    metadatas = [{"chunk_index": i, "page": 1 + i // 4, **base} for i in range(len(ids))]
    for start in range(0, len(ids), BATCH):
        end = start + BATCH
        store.upsert(
            ids[start:end],
            found.texts[start:end],
            found.vectors[start:end].tolist(),
            metadatas[start:end],
        )
    store.delete({"dataset": found.dataset, "file_hash": found.file_hash}, keep=ids)


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0
    """This process's CPU time, all threads (Chroma's and the hybrid's lexical side too): on a
    busy machine the wall-clock time includes waits for a core, the CPU time does not."""


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    took = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    yield took
    took.wall, took.cpu = time.perf_counter() - wall, time.process_time() - cpu


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def summary(timings: Sequence[Timing]) -> tuple[float, float, float]:
    """p50 and p95 of the wall-clock times, and p50 of the CPU times, in ms."""
    walls, cpus = [t.wall for t in timings], [t.cpu for t in timings]
    return ms(walls, 50), ms(walls, 95), ms(cpus, 50)


class Bench:
    def __init__(self, data: Path, seed: int) -> None:
        self.corpus = Corpus(seed)
        self.rng = np.random.default_rng([seed, 1])
        self.vectors = Vectors()
        self.models = BenchModels(self.vectors)
        self.projects = ProjectStore(data / "projects")
        if not self.projects.exists(NAMESPACE, PROJECT):
            self.projects.create(NAMESPACE, PROJECT, template="rag")
        self.ref = ProjectRef(NAMESPACE, PROJECT)
        self.project_dir = self.projects.path(NAMESPACE, PROJECT)
        self.database = self.projects.load(NAMESPACE, PROJECT).rag.databases[0]  # type: ignore[union-attr]
        self.folder = index_folder(self.project_dir, self.database)
        self.files = 0
        self.chunks = 0
        stored = self.store().count()
        while self.chunks < stored:  # an earlier run's database, grown again
            self.chunks += len(self.corpus.file(self.files).texts)
            self.files += 1
        if self.chunks != stored:
            raise SystemExit(f"{data} holds {stored} chunks, not an earlier run's files")

    def store(self) -> VectorStore:
        return create_store(self.database, project_dir=self.project_dir, clients=self.models.chroma)

    def grow(self, size: int) -> tuple[float, float]:
        """Files stored until the database holds `size` chunks; returns chunks a second of
        wall-clock time and of this process's CPU time (the text's generation included)."""
        store = self.store()
        record_write(
            self.database,
            index_records(self.database, self.project_dir, self.models.chroma),
            store.count,
        )
        added = 0
        with timed() as took:
            while self.chunks < size:
                found = self.corpus.file(self.files)
                store_file(store, found)
                self.files += 1
                self.chunks += len(found.texts)
                added += len(found.texts)
        return added / max(took.wall, 1e-9), added / max(took.cpu, 1e-9)

    def ask(self, text: str, vector: np.ndarray, options: QueryOptions) -> Timing:
        self.vectors.known[text] = vector.tolist()
        with timed() as took:
            answer = query(
                projects=self.projects, models=self.models, ref=self.ref, text=text, options=options
            )
        if not answer.hits:
            raise SystemExit(f"no hits for {text!r} ({options})")
        return took

    def latencies(self, count: int) -> dict[str, list[Timing]]:
        found: dict[str, list[Timing]] = {kind: [] for kind in KINDS}
        for _ in range(count):
            text, vector, source = self.corpus.question(
                self.rng, int(self.rng.integers(self.files))
            )
            where = {"dataset": source.dataset}
            for kind in KINDS:
                options = QueryOptions(
                    retrieval_strategy="basic_search" if kind.startswith("vector") else None,
                    metadata_filters=where if kind.endswith("filter") else None,
                )
                found[kind].append(self.ask(text, vector, options))
        return found

    def reload(self) -> Timing:
        """The first query after another process's write: this process loads the index again."""
        (self.folder / GENERATION).write_text(uuid.uuid4().hex)  # as another process's write
        text, vector, _ = self.corpus.question(self.rng, int(self.rng.integers(self.files)))
        return self.ask(text, vector, QueryOptions())

    def delete(self) -> Timing:
        """One file's chunks deleted as the datasets API does; the file is stored again after."""
        found = self.corpus.file(int(self.rng.integers(self.files)))
        store = self.store()
        with timed() as took:
            removed = store.delete({"dataset": found.dataset, "file_hash": found.file_hash})
        if removed != len(found.texts):
            raise SystemExit(f"deleted {removed} chunks of a file of {len(found.texts)}")
        store_file(store, found)
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    bench = Bench(args.data, args.seed)
    print("\n".join(table([]).splitlines()[:2]), flush=True)
    try:
        for size in sorted(args.sizes):
            rate = bench.grow(size)
            reload = bench.reload()
            bench.latencies(max(5, args.queries // 5))  # warm-up: pages read from disk
            latencies = bench.latencies(args.queries)
            deleted = bench.delete()
            row = {
                "chunks": bench.chunks,
                "insert/s": rate,
                "disk": disk_bytes(bench.folder),
                "rss": psutil.Process().memory_info().rss,
                "reload": reload,
                "delete": deleted,
                **{kind: summary(v) for kind, v in latencies.items()},
            }
            rows.append(row)
            print(progress(row), f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        bench.models.close()
        if not args.keep:
            shutil.rmtree(args.data, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print()
    print(table(rows))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"\npeak RSS {peak / 2**30:.2f} GiB; load average {load}; {os.cpu_count()} CPUs; "
        f"{args.queries} queries of each kind, top_k 5"
    )
    print("targets at 1M on 2 cores: hybrid p50 <= 50 ms, filtered p50 <= 50 ms, delete <= 1 s")


def progress(row: dict[str, Any]) -> str:
    """The row of the table, as soon as its size is measured."""
    return table([row]).splitlines()[-1]


def table(rows: list[dict[str, Any]]) -> str:
    head = ["chunks", "insert/s (cpu)", "disk", "RSS", "reload (cpu)"]
    head += [f"{kind} p50/p95 (cpu) ms" for kind in KINDS] + ["delete (cpu)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            f"{row['chunks']:,}",
            f"{row['insert/s'][0]:,.0f} ({row['insert/s'][1]:,.0f})" if row["insert/s"][0] else "-",
            f"{row['disk'] / 2**30:.2f} GiB",
            f"{row['rss'] / 2**30:.2f} GiB",
            f"{row['reload'].wall * 1000:,.0f} ms ({row['reload'].cpu * 1000:,.0f})",
            *(f"{row[kind][0]:.1f} / {row[kind][1]:.1f} ({row[kind][2]:.1f})" for kind in KINDS),
            f"{row['delete'].wall * 1000:.0f} ms ({row['delete'].cpu * 1000:.0f})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
