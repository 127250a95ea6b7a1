"""The parse sandbox's costs: the process hop per small file, and a big file streamed.

    .venv/bin/python bench/sandbox.py [--small 200] [--big-mb 50] [--embedder counting|universal]

1. The hop: the same small text file parsed, chunked and extracted `--small` times in this
   process, then through a warm parse process (`ParsePool`); the difference per file is what
   isolation costs. Also the first file of a fresh pool (its process started from the
   forkserver) and of a fresh process from a running forkserver.
2. Big file: a `--big-mb` MB text file through `process_file` into a real Chroma store, with a
   four-number embedder by default (the pipeline's own cost; `universal` uses the bundled
   MiniLM, which then dominates): chunks/s, the worker's peak RSS growth over its baseline,
   the parse process's peak RSS, and the progress callbacks seen.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from llamafarm.config.models import Database, DataProcessingStrategy, EmbeddingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import ParsedDocument
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import apply_extractors
from llamafarm.ingest.parsers import parse_file
from llamafarm.ingest.parsers.text import TextParser
from llamafarm.ingest.sandbox import Job, ParseLimits, ParsePool

# A parse process imports the worker's main module again (as multiprocessing does, unless it is
# a package's __main__, like `python -m llamafarm.cli worker`): what only the worker needs
# (Chroma, the pipeline, the embedders) is imported where it is used, as in `lf`.
if TYPE_CHECKING:
    from llamafarm.ingest.pipeline import Plan
    from llamafarm.rag.stores import ChromaClients

PARAGRAPH = (
    "Paragraph {i} of the orchard log. The pickers counted {n} crates of apples on row {i} "
    "and wrote down the weather, the ripeness of the fruit and what the next day needs."
)
OPTIONS = {"chunk_size": 1000, "chunk_overlap": 100, "chunk_strategy": "paragraphs"}
STRATEGY = DataProcessingStrategy(
    name="s", parsers=[ParserConfig(type="TextParser", config=OPTIONS)]
)
LIMITS = ParseLimits(
    processes=2, timeout_s=600, max_mb=2048, max_unzipped_mb=1024, max_zip_ratio=100
)


class CountingEmbedder:
    name = "counting"
    dimension = 4

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(len(t)), float(t.count("e")), 1.0, 0.0] for t in texts]

    def fingerprint(self) -> str:
        return "counting-4"

    def check(self) -> None:
        return None


def in_process(path: Path) -> int:
    config = STRATEGY.parsers[0]
    document: ParsedDocument = parse_file(config, path, filename=path.name)
    chunks = chunk_document(document, **OPTIONS)  # type: ignore[arg-type]
    apply_extractors(STRATEGY, path.name, chunks)
    return len(chunks)


def job(path: Path) -> Job:
    return Job(
        parser=TextParser,
        fallback=None,
        options=OPTIONS,
        path=path,
        filename=path.name,
        strategy=STRATEGY,
        batch=256,
        max_unzipped_bytes=LIMITS.max_unzipped_mb << 20,
        max_zip_ratio=LIMITS.max_zip_ratio,
    )


def sandboxed(pool: ParsePool, path: Path) -> int:
    with pool.run(job(path), lambda: False) as run:
        return sum(len(batch) for batch in run)


def hop(work: Path, rounds: int) -> None:
    small = work / "small.txt"
    small.write_text("\n\n".join(PARAGRAPH.format(i=i, n=i * 7) for i in range(12)))
    print(f"small file: {small.stat().st_size} bytes, {in_process(small)} chunks")
    begun = time.perf_counter()
    for _ in range(rounds):
        in_process(small)
    local = (time.perf_counter() - begun) / rounds

    begun = time.perf_counter()
    pool = ParsePool(LIMITS)
    sandboxed(pool, small)
    first = time.perf_counter() - begun
    begun = time.perf_counter()
    for _ in range(rounds):
        sandboxed(pool, small)
    isolated = (time.perf_counter() - begun) / rounds
    for server in psutil.Process().children():
        for child in server.children():
            info = child.memory_full_info()
            print(
                f"an idle parse process: RSS {info.rss / 2**20:.0f} MiB, "
                f"USS (its own pages) {info.uss / 2**20:.0f} MiB"
            )
    pool.close()
    begun = time.perf_counter()
    fresh = ParsePool(LIMITS)
    sandboxed(fresh, small)  # the forkserver runs already: only the fork
    started = time.perf_counter() - begun
    fresh.close()
    print(f"in process:            {local * 1000:8.2f} ms/file")
    print(f"through a parse process: {isolated * 1000:6.2f} ms/file")
    print(f"process hop:           {(isolated - local) * 1000:8.2f} ms/file")
    print(f"first file, new pool and forkserver: {first * 1000:.0f} ms")
    print(f"first file, new process (forkserver up): {started * 1000:.0f} ms")


def big(work: Path, size_mb: int, embedder_kind: str) -> None:
    from llamafarm.ingest.pipeline import Plan
    from llamafarm.rag.embedders import create_embedder
    from llamafarm.rag.embedders.base import Embedder
    from llamafarm.rag.stores import ChromaClients

    path = work / "big.txt"
    with path.open("w") as out:
        i = 0
        while out.tell() < size_mb << 20:
            out.write("\n\n".join(PARAGRAPH.format(i=i + k, n=(i + k) * 7) for k in range(1000)))
            out.write("\n\n")
            i += 1000
    embedder: Embedder
    if embedder_kind == "universal":
        strategy = EmbeddingStrategy(name="e", type="UniversalEmbedder", config={})
        embedder = create_embedder(strategy)
    else:
        embedder = CountingEmbedder()
    plan = Plan(STRATEGY, Database(name="db", type="ChromaStore"), embedder)
    pool = ParsePool(LIMITS)
    chroma = ChromaClients()
    me = psutil.Process()
    warm = work / "warm.txt"
    warm.write_text(PARAGRAPH.format(i=1, n=1))
    run(plan, warm, work, chroma, pool, [])  # the store's and the pool's first use
    baseline = me.memory_info().rss
    peaks = {"worker": baseline, "parse": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peaks["worker"] = max(peaks["worker"], me.memory_info().rss)
            # The parse processes are the children of the forkserver, this one's child.
            for server in me.children():
                try:
                    for child in server.children():
                        peaks["parse"] = max(peaks["parse"], child.memory_info().rss)
                except psutil.Error:
                    pass

    progress: list[tuple[float, int]] = []
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    begun = time.perf_counter()
    outcome = run(plan, path, work, chroma, pool, progress, begun)
    seconds = time.perf_counter() - begun
    done.set()
    watcher.join()
    pool.close()
    chroma.close()
    mb = path.stat().st_size / 2**20
    print(
        f"big file: {mb:.0f} MiB, {outcome} chunks in {seconds:.1f} s: "
        f"{outcome / seconds:.0f} chunks/s, {mb / seconds:.2f} MiB/s"
    )
    print(
        f"worker RSS: baseline {baseline / 2**20:.0f} MiB, peak "
        f"{peaks['worker'] / 2**20:.0f} MiB (+{(peaks['worker'] - baseline) / 2**20:.0f} MiB)"
    )
    print(f"parse process peak RSS: {peaks['parse'] / 2**20:.0f} MiB")
    if progress:
        print(
            f"progress: {len(progress)} updates; first {progress[0][1]} chunks after "
            f"{progress[0][0]:.1f} s, last {progress[-1][1]} after {progress[-1][0]:.1f} s"
        )


def run(
    plan: Plan,
    path: Path,
    work: Path,
    chroma: ChromaClients,
    pool: ParsePool,
    progress: list[tuple[float, int]],
    begun: float = 0.0,
) -> int:
    from llamafarm.ingest.pipeline import process_file

    outcome = process_file(
        plan=plan,
        dataset="d",
        path=path,
        filename=path.name,
        file_hash=path.name[0] * 64,
        stored_fingerprint=None,
        project_dir=work,
        chroma=chroma,
        parsing=pool,
        should_stop=lambda: False,
        on_stored=lambda n: progress.append((time.perf_counter() - begun, n)),
    )
    return outcome.chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--big-mb", type=int, default=50)
    parser.add_argument("--embedder", choices=["counting", "universal"], default="counting")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lf-bench-sandbox-"))
    hop(work, args.small)
    if args.big_mb:
        big(work, args.big_mb, args.embedder)


if __name__ == "__main__":  # the parse processes' forkserver imports this module as __main__
    main()
