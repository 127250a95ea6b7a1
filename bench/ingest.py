"""Ingestion throughput: end to end through a real server and worker vs the raw embedder.

    .venv/bin/python bench/ingest.py [FOLDER] [--files 50] [--paragraphs 40]

Without FOLDER it generates a corpus of FILES x PARAGRAPHS paragraphs. It starts `lf start`
(server + embedded worker) on a free port with a temporary data directory, uploads the files,
waits for the worker to be warm (its embedder loaded, its parse processes started: its CPU
quiet), times processing from the request to the task's end, then embeds the very same chunk
texts with the raw embedder in this process (all at once, and one call per file as the
pipeline does, its model loaded first likewise), and prints the rates, their ratios, the CPU a
chunk took in the worker and in the raw embedder, and the worker's peak memory.

Then it changes `--edit` (default 10 %) of the paragraphs, uploads the edited files and times
their processing again: unchanged chunks reuse their cached vectors (issue 19), so this is
compared with the full ingest of the same run. Last it reindexes the database (a blue/green
rebuild of every stored file, the embedder unchanged, so vectors come from the cache) and
compares its rate with the full ingest's. For each run it prints where the worker's time went:
each step (parse, chunk, embed, store) summed over the files from their `rag_processing`
events.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psutil
from harness import PROCESS, free_port, run_task, wait_until_idle

from llamafarm.config import parse_config, render_template
from llamafarm.rag.embedders import create_embedder
from llamafarm.rag.stores import ChromaStore

VOCABULARY = """
glacier basin sediment core isotope ratio climate record summer melt ridge valley moraine tundra
permafrost carbon flux sample station survey field season ice sheet temperature gradient snowpack
runoff river delta estuary salinity plankton bloom nutrient cycle forest canopy soil moisture
drought index rainfall model forecast
"""
WORDS = VOCABULARY.split()


def generate(folder: Path, files: int, paragraphs: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for f in range(files):
        body = []
        for _ in range(paragraphs):
            sentences = [
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 22))).capitalize() + "."
                for _ in range(rng.randint(2, 5))
            ]
            body.append(" ".join(sentences))
        (folder / f"doc{f:03d}.txt").write_text("\n\n".join(body))


class Rerun(NamedTuple):
    again_id: str
    re_ingest: float
    redone: list[dict[str, Any]]
    reused: int
    re_chunks: int
    reindex_id: str
    reindex: float
    rebuilt: dict[str, Any]
    reindex_chunks: int
    reindex_reused: int


def tree_pss(root: psutil.Process) -> tuple[int, int]:
    """PSS of the worker (the server's child) and of its child processes (parse processes,
    their forkserver), summed.

    PSS splits pages shared by the pool's parent and children between them, so the sum is
    what the worker really holds; summing RSS would count the forked pages twice.
    """
    own = children = 0
    for child in root.children():
        try:
            own += child.memory_full_info().pss
            children += sum(p.memory_full_info().pss for p in child.children(recursive=True))
        except psutil.Error:
            pass
    return own, children


def tree_cpu(worker: psutil.Process) -> dict[int, float]:
    """CPU seconds (user and system) of each of the worker's child processes (its parse
    processes and their forkserver) by pid."""
    seconds = {}
    for child in worker.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        seconds[child.pid] = times.user + times.system
    return seconds


def watch_rss(root: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    """Peak memory of the worker with its pool (`peak[0]`), of the worker alone (`peak[1]`)
    and of its parse processes (`peak[2]`), as PSS (`tree_pss`)."""
    while not stop.is_set():
        own, children = tree_pss(root)
        peak[:] = max(peak[0], own + children), max(peak[1], own), max(peak[2], children)
        # Reading smaps costs CPU that the worker would miss: sample once a second.
        stop.wait(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--paragraphs", type=int, default=40)
    parser.add_argument("--edit", type=float, default=0.1, help="Share of paragraphs changed.")
    parser.add_argument(
        "--only-ingest", action="store_true", help="No re-ingest after an edit, no reindex."
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lf-bench-"))
    corpus = args.folder or work / "corpus"
    if args.folder is None:
        corpus.mkdir()
        generate(corpus, args.files, args.paragraphs)
    paths = sorted(p for p in corpus.rglob("*") if p.is_file())

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    lf = str(Path(sys.executable).parent / "lf")
    env = {**os.environ, "LF_VERSION_CHECK_URL": "", "LF_LOG_LEVEL": "warning"}
    with (work / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [lf, "start", "--port", str(port), "--data-dir", str(work / "data")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        http = httpx.Client(base_url=url, timeout=120)
        for _ in range(300):
            try:
                http.get("/health/liveness")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        http.post("/v1/projects/bench", json={"name": "kb"}).raise_for_status()
        base = "/v1/projects/bench/kb"
        for path in paths:
            with path.open("rb") as handle:
                http.post(
                    f"{base}/datasets/documents/data", files={"file": (path.name, handle)}
                ).raise_for_status()
        while not any(
            c["name"] == "worker" and c["status"] == "healthy"
            for c in http.get("/health").json()["components"]
        ):
            time.sleep(0.2)

        api_process = psutil.Process(server.pid)
        [worker_process] = api_process.children()
        warming = wait_until_idle(worker_process)
        cpu_before = [p.cpu_times() for p in (api_process, worker_process)]
        parse_before = tree_cpu(worker_process)
        idle = tree_pss(api_process)
        stop, peak = threading.Event(), [0, 0, 0]
        watcher = threading.Thread(target=watch_rss, args=(psutil.Process(server.pid), stop, peak))
        watcher.start()
        started = time.perf_counter()
        task = run_task(http, base, *PROCESS)
        end_to_end = time.perf_counter() - started
        cpu_after = [p.cpu_times() for p in (api_process, worker_process)]
        parse_cpu = sum(
            seconds - parse_before.get(pid, 0.0)
            for pid, seconds in tree_cpu(worker_process).items()
        )
        api_cpu, worker_cpu = (
            (a.user + a.system) - (b.user + b.system)
            for a, b in zip(cpu_after, cpu_before, strict=True)
        )
        stop.set()
        watcher.join()
        chunks = sum(f["chunks"] for f in task["meta"]["files"])
        if task["state"] != "SUCCESS":
            raise SystemExit(f"processing failed: {task['error']}")
        later = None if args.only_ingest else rerun(http, base, paths, work, args.edit)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

    busy = job_seconds(work / "data" / "state.db", task["task_id"])
    runs = [("ingest", task["task_id"])]
    if later is not None:
        runs += [("re-ingest", later.again_id), ("reindex", later.reindex_id)]
    steps = {run: step_seconds(work / "data" / "state.db", run_id) for run, run_id in runs}
    store_dir = work / "data" / "projects" / "bench" / "kb" / "stores" / "main_db"
    # A reindex built generation 1 of the collection.
    collection = "documents" if later is None else "documents_g1"
    stored = stored_chunks(ChromaStore(path=store_dir, collection_name=collection))
    by_file = [stored[f["hash"]] for f in task["meta"]["files"]]  # the first run's files
    texts = [text for chunks_of_file in by_file for text in chunks_of_file]
    assert len(texts) == chunks, (len(texts), chunks)

    config = parse_config(render_template("rag", namespace="bench", name="kb"))
    assert config.rag is not None
    embedder = create_embedder(config.rag.databases[0].embedding_strategies[0])
    embedder.embed(texts[:8])  # load the model outside the timing, as the worker had
    me = psutil.Process()
    cpu_started = sum(me.cpu_times()[:2])
    started = time.perf_counter()
    embedder.embed(texts)
    raw = time.perf_counter() - started
    raw_cpu = sum(me.cpu_times()[:2]) - cpu_started
    started = time.perf_counter()
    for chunks_of_file in by_file:
        embedder.embed(chunks_of_file)
    per_file = time.perf_counter() - started

    e2e_rate, raw_rate, file_rate = chunks / end_to_end, chunks / raw, chunks / per_file
    print(f"corpus: {len(paths)} files, {chunks} chunks, {sum(map(len, texts))} chars")
    print(f"end to end (request -> task done):  {end_to_end:6.2f} s  {e2e_rate:7.1f} chunks/s")
    print(f"raw embedder, all chunks at once:   {raw:6.2f} s  {raw_rate:7.1f} chunks/s")
    print(f"raw embedder, one call per file:    {per_file:6.2f} s  {file_rate:7.1f} chunks/s")
    print(f"ratio end to end / raw (all at once): {e2e_rate / raw_rate:.2f}")
    print(f"ratio end to end / raw (per file):    {e2e_rate / file_rate:.2f}")
    print(
        f"CPU used meanwhile: API server {api_cpu:.2f} s, worker {worker_cpu:.2f} s, its parse "
        f"processes {parse_cpu:.2f} s (the worker warmed up for {warming:.1f} s before)"
    )
    print(
        f"CPU a chunk: worker {worker_cpu / chunks * 1000:.1f} ms, raw embedder all at once "
        f"{raw_cpu / chunks * 1000:.1f} ms"
    )
    print(f"time inside file jobs, summed over files processed at once: {busy:6.2f} s")
    mib = [round(value / 2**20) for value in (*idle, *peak)]
    print(f"worker peak memory (PSS, with any child processes): {mib[2]} MiB")
    print(
        f"  the worker alone {mib[3]} MiB (idle before: {mib[0]}), its parse processes "
        f"{mib[4]} MiB (idle before: {mib[1]})"
    )
    if later is not None:
        report(later, share=args.edit, end_to_end=end_to_end, e2e_rate=e2e_rate)
    print("worker time by step, summed over files (s):")
    names = ["parse", "chunk", "embed", "store"]
    print(f"  {'':10s}" + "".join(f"{n:>9s}" for n in names))
    for run, seconds in steps.items():
        print(f"  {run:10s}" + "".join(f"{seconds.get(n, 0.0):9.2f}" for n in names))


def rerun(http: httpx.Client, base: str, paths: list[Path], work: Path, share: float) -> Rerun:
    """Processing again after an edit of `share` of the paragraphs, then a reindex."""
    edited = edit(paths, work / "edited", share)
    for path in edited:
        with path.open("rb") as handle:
            http.post(
                f"{base}/datasets/documents/data", files={"file": (path.name, handle)}
            ).raise_for_status()
    started = time.perf_counter()
    again = run_task(http, base, *PROCESS)
    re_ingest = time.perf_counter() - started
    redone = [f for f in again["meta"]["files"] if f["state"] == "SUCCESS"]
    reused = sum(f["chunks_reused"] for f in redone)
    re_chunks = sum(f["chunks"] for f in redone)

    started = time.perf_counter()
    rebuilt = run_task(http, base, "/rag/databases/main_db/reindex")
    reindex = time.perf_counter() - started
    if rebuilt["state"] != "SUCCESS":
        raise SystemExit(f"reindex failed: {rebuilt['error']}")
    reindex_chunks = sum(f["chunks"] for f in rebuilt["meta"]["files"])
    reindex_reused = sum(f["chunks_reused"] for f in rebuilt["meta"]["files"])
    return Rerun(
        again["task_id"],
        re_ingest,
        redone,
        reused,
        re_chunks,
        rebuilt["task_id"],
        reindex,
        rebuilt,
        reindex_chunks,
        reindex_reused,
    )


def report(r: Rerun, *, share: float, end_to_end: float, e2e_rate: float) -> None:
    """The re-ingest's and the reindex's figures, against the full ingest's."""
    print(
        f"re-ingest after changing {share:.0%} of the paragraphs: {len(r.redone)} edited "
        f"files, {r.re_chunks} chunks of which {r.reused} reused "
        f"({r.reused / max(r.re_chunks, 1):.0%})"
    )
    print(f"re-ingest (request -> task done):   {r.re_ingest:6.2f} s")
    print(f"full ingest / re-ingest:            {end_to_end / r.re_ingest:6.2f}x")
    reindex_rate = r.reindex_chunks / r.reindex
    print(
        f"reindex (request -> switched):      {r.reindex:6.2f} s  {reindex_rate:7.1f} chunks/s "
        f"({r.reindex_chunks} chunks of {len(r.rebuilt['meta']['files'])} files, "
        f"{r.reindex_reused} reused)"
    )
    print(f"reindex rate / full ingest rate:    {reindex_rate / e2e_rate:6.2f}x")


def edit(paths: list[Path], folder: Path, share: float, seed: int = 11) -> list[Path]:
    """Copies of the files (in `folder`) with `share` of all their paragraphs rewritten; the
    files with a changed paragraph."""
    rng = random.Random(seed)
    folder.mkdir()
    documents = [path.read_text().split("\n\n") for path in paths]
    places = [(d, p) for d, paragraphs in enumerate(documents) for p in range(len(paragraphs))]
    for d, p in rng.sample(places, round(len(places) * share)):
        words = documents[d][p].split()
        documents[d][p] = " ".join(rng.choice(WORDS) if rng.random() < 0.3 else w for w in words)
    changed = sorted({d for d, _ in places if documents[d] != paths[d].read_text().split("\n\n")})
    for d in changed:
        (folder / paths[d].name).write_text("\n\n".join(documents[d]))
    return [folder / paths[d].name for d in changed]


def job_seconds(state_db: Path, task_id: str) -> float:
    import sqlite3

    with sqlite3.connect(state_db) as connection:
        rows = connection.execute(
            "SELECT started_at, finished_at FROM task_files WHERE task_id = ?", (task_id,)
        ).fetchall()
    return float(sum(end - start for start, end in rows))


def step_seconds(state_db: Path, task_id: str) -> dict[str, float]:
    """Seconds of each step (parse, chunk, embed, store) summed over a task's files, from
    their `rag_processing` events."""
    import json
    import sqlite3

    totals: dict[str, float] = {}
    with sqlite3.connect(state_db) as connection:
        rows = connection.execute("SELECT data, sub_events FROM event_logs").fetchall()
    for data, sub_events in rows:
        if json.loads(data).get("task_id") != task_id:
            continue
        for sub in json.loads(sub_events):
            totals[sub["name"]] = totals.get(sub["name"], 0.0) + sub["duration_ms"] / 1000
    return totals


def stored_chunks(store: ChromaStore) -> dict[str, list[str]]:
    """The stored chunk texts by file hash, in chunk order."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(store.path), settings=Settings(anonymized_telemetry=False)
    )
    got = client.get_collection(store.collection_name).get(include=["documents", "metadatas"])
    files: dict[str, list[tuple[int, str]]] = {}
    for text, meta in zip(got["documents"] or [], got["metadatas"] or [], strict=True):
        files.setdefault(str(meta["file_hash"]), []).append((int(str(meta["chunk_index"])), text))
    return {key: [text for _, text in sorted(chunks)] for key, chunks in files.items()}


if __name__ == "__main__":
    main()
