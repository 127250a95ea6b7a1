"""Scale-out: 1 vs 2 workers, the remote stack vs the embedded one, 1 vs 2 API replicas.

    .venv/bin/python bench/scale_out.py [--files 200] [--paragraphs 40] [--queries 400]

Generates the corpus of bench/ingest.py and runs, each time with fresh processes and empty
data dirs of their own:

1. the remote stack (docs/deployment.md: PostgreSQL, Redis db 13, a `chroma run` of its own,
   `LF_BLOB_STORE=database`) with one `lf start --no-worker` replica and 1 `lf worker`, then 2;
   each worker pinned to one core (its threads follow its CPU affinity) and processing
   `--worker-concurrency` files at once, so the ratio of the end-to-end chunks/s is the scaling
   of ingestion over the cores (target >= 1.7x on 2);
2. the embedded stack (SQLite, the filesystem broker, embedded Chroma, one data dir) with one
   `lf worker` pinned the same way, against the remote run with 1 worker (target >= 0.85x);
3. query p50 and p95 of `--clients` concurrent clients (8) sending `--queries` hybrid queries to
   one replica, then spread over two.

Each ingestion run also prints where the CPU went, in CPU-milliseconds per chunk by role (the
workers with their parse processes, the API replica, the run's Chroma server, PostgreSQL and
Redis, all of whose processes are counted) and the whole machine's busy time. A role's CPU time
does not depend on what else waits for a core. `ceiling` is what the 2 cores could make if the
CPU per chunk stayed as measured: 2 / (the machine's CPU-s per chunk), a bound on what any
number of workers can reach, since the services' work grows with the chunks (on a quiet
machine only: the machine's busy time counts every process).

Needs PostgreSQL and Redis on 127.0.0.1 (trust auth), as the tests do; makes and drops its
own database `lf_bench_*`. Run it on a quiet machine: the figures are meaningless under load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from harness import PROCESS, free_port, run_task

from ingest import generate

BIN = Path(sys.executable).parent
LF = str(BIN / "lf")
REDIS = "redis://127.0.0.1:6379/13"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
QUESTIONS = [
    "glacier melt in summer",
    "isotope ratio of the sediment core",
    "permafrost carbon flux",
    "drought index and rainfall forecast",
    "plankton bloom nutrient cycle",
    "snowpack runoff river delta",
    "forest canopy soil moisture",
    "ice sheet temperature gradient",
]


@dataclass
class Stack:
    name: str
    env: dict[str, str]
    work: Path
    processes: list[subprocess.Popen[bytes]]

    def spawn(self, args: list[str], data_dir: Path, *, core: int | None = None) -> int:
        log = self.work / f"{self.name}-{len(self.processes)}.log"
        pin = None if core is None else (lambda: os.sched_setaffinity(0, {core}))
        with log.open("wb") as output:
            process = subprocess.Popen(
                [LF, *args, "--data-dir", str(data_dir)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=pin,
            )
        self.processes.append(process)
        return process.pid

    def replica(self, data_dir: Path) -> str:
        port = free_port()
        self.spawn(["start", "--no-worker", "--host", "127.0.0.1", "--port", str(port)], data_dir)
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health/liveness").status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit(f"{self.name}: the replica did not start; see {self.work}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


@contextmanager
def services(work: Path) -> Iterator[tuple[dict[str, str], int]]:
    """A PostgreSQL database, Redis db 13 and a Chroma server of this run: the remote stack's
    settings, and the Chroma server's pid."""
    import psycopg
    import redis

    name = f"lf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    queue = redis.Redis.from_url(REDIS)
    queue.flushdb()
    port = free_port()
    with (work / "chroma.log").open("wb") as log:
        chroma = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(work / "chroma"), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield (
            {
                "LF_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                "LF_BROKER_URL": REDIS,
                "LF_BLOB_STORE": "database",
                "LF_CHROMA_URL": f"http://127.0.0.1:{port}",
            },
            chroma.pid,
        )
    finally:
        chroma.terminate()
        chroma.wait(timeout=30)
        queue.flushdb()
        queue.close()
        with psycopg.connect(ADMIN, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def upload(url: str, project: str, paths: list[Path]) -> None:
    """A new project with the corpus uploaded, not processed."""
    with httpx.Client(base_url=url, timeout=300) as http:
        http.post("/v1/projects/bench", json={"name": project}).raise_for_status()
        for path in paths:
            with path.open("rb") as handle:
                http.post(
                    f"/v1/projects/bench/{project}/datasets/documents/data",
                    files={"file": (path.name, handle)},
                ).raise_for_status()


def process(url: str, project: str) -> tuple[int, float]:
    """(chunks, seconds from the request to the task's end)."""
    base = f"/v1/projects/bench/{project}"
    with httpx.Client(base_url=url, timeout=300) as http:
        started = time.perf_counter()
        task = run_task(http, base, *PROCESS)
    elapsed = time.perf_counter() - started
    if task["state"] != "SUCCESS":
        raise SystemExit(f"processing failed: {task['error']}")
    return sum(f["chunks"] for f in task["meta"]["files"]), elapsed


ROLES = ("workers", "replica", "chroma", "postgres", "redis")


def cpu_by_role(stack: Stack, chroma: int | None) -> dict[str, float]:
    """CPU seconds used so far by each role's processes (with their reaped children)."""
    ours = {p.pid: "--no-worker" in p.args for p in stack.processes}  # type: ignore[operator]
    seconds = dict.fromkeys(ROLES, 0.0)
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is None:
            continue
        name = process.info["name"] or ""
        try:
            spawned = [p.pid for p in (process, *process.parents()) if p.pid in ours]
        except psutil.Error:
            continue
        if spawned:
            role = "replica" if ours[spawned[0]] else "workers"
        elif process.pid == chroma:
            role = "chroma"
        elif name.startswith("postgres"):
            role = "postgres"
        elif name.startswith("redis-server"):
            role = "redis"
        else:
            continue
        seconds[role] += times.user + times.system + times.children_user + times.children_system
    return seconds


def busy() -> float:
    """The machine's busy CPU seconds so far (all cores)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def run_ingest(
    name: str,
    env: dict[str, str],
    work: Path,
    paths: list[Path],
    workers: int,
    *,
    shared: bool,
    chroma: int | None = None,
) -> float:
    """chunks/s with `workers` workers, each pinned to a core of its own."""
    stack = Stack(name, {**env, "LF_LOG_LEVEL": "info"}, work, [])
    try:
        # Embedded: the replica and its workers share one data dir (one machine).
        data = work / f"{name}-api"
        url = stack.replica(data)
        upload(url, name, paths)
        # Started after the project exists, each worker loads its embedder at start: the
        # timing below is the steady state, the same for every run.
        logs = []
        for i in range(workers):
            stack.spawn(["worker"], work / f"{name}-w{i}" if shared else data, core=i)
            logs.append(work / f"{name}-{len(stack.processes) - 1}.log")
        deadline = time.monotonic() + 300
        while not all("loaded" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the workers did not load their embedder; see {work}")
            time.sleep(0.2)
        before, machine = cpu_by_role(stack, chroma), busy()
        chunks, seconds = process(url, name)
        after, machine = cpu_by_role(stack, chroma), busy() - machine
    finally:
        stack.stop()
    rate = chunks / seconds
    print(f"{name:>22}: {chunks} chunks in {seconds:6.1f} s = {rate:7.1f} chunks/s")
    roles = ", ".join(f"{r} {(after[r] - before[r]) / chunks * 1000:.1f}" for r in ROLES)
    print(
        f"{'':>22}  CPU ms/chunk: {roles}; machine {machine / chunks * 1000:.1f} "
        f"(ceiling on 2 cores {2 * chunks / machine:.1f} chunks/s)"
    )
    return rate


def query_p50(urls: list[str], project: str, queries: int, clients: int) -> tuple[float, float]:
    """p50 and p95 in ms of `queries` hybrid queries from `clients` threads, round-robin over
    `urls`."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(queries))

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            for n in counter:
                url = urls[(index + n) % len(urls)]
                body = {"query": QUESTIONS[n % len(QUESTIONS)], "top_k": 5}
                started = time.perf_counter()
                http.post(f"{url}/v1/projects/bench/{project}/rag/query", json=body)
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--paragraphs", type=int, default=40)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=2,
        help="each worker's LF_WORKER_CONCURRENCY, as docs/deployment.md advises for a worker of "
        "one core (16, the default, lets one worker hold files the other could be processing)",
    )
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: each worker is pinned to one")

    work = Path(tempfile.mkdtemp(prefix="lf-scale-out-"))
    corpus = work / "corpus"
    corpus.mkdir()
    generate(corpus, args.files, args.paragraphs)
    paths = sorted(corpus.iterdir())
    base_env = {
        **os.environ,
        "LF_VERSION_CHECK_URL": "",
        "LF_LOG_LEVEL": "warning",
        "LF_WORKER_CONCURRENCY": str(args.worker_concurrency),
    }
    print(f"{len(paths)} files of {args.paragraphs} paragraphs; work in {work}")
    try:
        embedded = run_ingest("embedded-1-worker", base_env, work, paths, 1, shared=False)
        with services(work) as (remote, chroma):
            env = {**base_env, **remote}
            one = run_ingest("remote-1-worker", env, work, paths, 1, shared=True, chroma=chroma)
            two = run_ingest("remote-2-workers", env, work, paths, 2, shared=True, chroma=chroma)
            print(f"2 workers / 1 worker: {two / one:.2f}x (target >= 1.7x)")
            print(f"remote / embedded, 1 worker: {one / embedded:.2f}x (target >= 0.85x)")

            stack = Stack("replicas", env, work, [])
            try:
                urls = [stack.replica(work / f"replica-{i}") for i in range(2)]
                for url in urls:  # load each replica's embedder before timing
                    query_p50([url], "remote-2-workers", len(QUESTIONS), 1)
                for count in (1, 2):
                    p50, p95 = query_p50(
                        urls[:count], "remote-2-workers", args.queries, args.clients
                    )
                    print(
                        f"query via {count} replica(s), {args.clients} clients: "
                        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"
                    )
            finally:
                stack.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
