"""Query latency while the worker ingests vs idle, through a real server and worker.

    .venv/bin/python bench/reads.py [--files 12] [--paragraphs 400] [--queries 150] [--pause 0.05]

Not part of `make bench`. It starts `lf start` (server + embedded worker) on a free port with a
temporary data directory, ingests a few small files so that queries find something, then times
`POST …/rag/query` (the `rag` template's hybrid strategy, top 5) from the client over keep-alive
HTTP: QUERIES queries on the idle server, then queries PAUSE seconds apart (so that the reader
does not take a core of its own from the worker) for as long as the worker
processes FILES generated files of PARAGRAPHS paragraphs each (hundreds of chunks a file, so
each store write is large). It prints p50, p95, p99 and the slowest of both, and the ratio of
the p95s. On a shared or small machine the ingestion also takes CPU from the queries: the ratio
includes that, not only waits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from harness import free_port, wait_until_up

from ingest import WORDS, generate

BASE = "/v1/projects/bench/reads"
QUESTIONS = [f"{a} {b} {c}" for a, b, c in zip(WORDS, WORDS[7:], WORDS[13:], strict=False)]


def timed_queries(
    http: httpx.Client, stop: threading.Event | None, count: int, pause: float
) -> list[float]:
    """Latencies of queries `pause` seconds apart: `count` of them, or until `stop` is set."""
    latencies: list[float] = []
    i = 0
    while (stop is None and i < count) or (stop is not None and not stop.is_set()):
        body = {"query": QUESTIONS[i % len(QUESTIONS)], "top_k": 5}
        started = time.perf_counter()
        http.post(f"{BASE}/rag/query", json=body).raise_for_status()
        latencies.append(time.perf_counter() - started)
        i += 1
        time.sleep(pause)
    return latencies


def process(http: httpx.Client, folder: Path) -> str:
    for path in sorted(folder.iterdir()):
        http.post(
            f"{BASE}/datasets/documents/data", files={"file": (path.name, path.read_bytes())}
        ).raise_for_status()
    accepted = http.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    accepted.raise_for_status()
    task_id: str = accepted.json()["task_id"]
    return task_id


def wait(http: httpx.Client, task_id: str) -> dict[str, object]:
    while True:
        task: dict[str, object] = http.get(f"{BASE}/tasks/{task_id}").json()
        if task["state"] not in ("PENDING", "STARTED"):
            return task
        time.sleep(0.5)


def line(name: str, latencies: list[float]) -> str:
    ms = np.asarray(latencies) * 1000
    p50, p95, p99 = (np.percentile(ms, q) for q in (50, 95, 99))
    return f"{name:<18} {len(ms):6d}  {p50:7.1f}  {p95:7.1f}  {p99:7.1f}  {ms.max():7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--paragraphs", type=int, default=400)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between queries")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, small, big = root / "data", root / "small", root / "big"
        for folder in (data, small, big):
            folder.mkdir()
        generate(small, 3, 20, seed=1)
        generate(big, args.files, args.paragraphs, seed=2)
        for path in big.iterdir():
            path.rename(path.with_name("big-" + path.name))
        port = free_port()
        lf = str(Path(sys.executable).parent / "lf")
        env = {**os.environ, "LF_VERSION_CHECK_URL": "", "LF_LOG_LEVEL": "warning"}
        log = root / "server.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [lf, "start", "--port", str(port), "--data-dir", str(data)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
            wait_until_up(http, server, log)
            http.post("/v1/projects/bench", json={"name": "reads"}).raise_for_status()
            first = wait(http, process(http, small))
            assert first["state"] == "SUCCESS", first
            timed_queries(http, None, 5, 0)  # warm up
            idle = timed_queries(http, None, args.queries, args.pause)

            task_id = process(http, big)
            stop = threading.Event()
            during: list[float] = []
            reader = threading.Thread(
                target=lambda: during.extend(timed_queries(http, stop, 0, args.pause)), daemon=True
            )
            started = time.perf_counter()
            reader.start()
            task = wait(http, task_id)
            stop.set()
            reader.join()
            took = time.perf_counter() - started
            assert task["state"] == "SUCCESS", task
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)

    print(f"ingestion of {args.files} files x {args.paragraphs} paragraphs: {took:.1f} s")
    print(f"{'queries':<18} {'n':>6}  {'p50 ms':>7}  {'p95 ms':>7}  {'p99 ms':>7}  {'max ms':>7}")
    print(line("idle", idle))
    print(line("during ingestion", during))
    ratio = np.percentile(during, 95) / np.percentile(idle, 95)
    print(f"p95 during / idle: {ratio:.2f}x")


if __name__ == "__main__":
    main()
