"""Scale-out on one machine: two API replicas (`lf start --no-worker`) and two workers
(`lf worker`), each with an empty data dir of its own, sharing only Redis (the broker),
PostgreSQL (state, configs, files, BM25 index) and a Chroma server (vectors); the commands and
settings are those of docs/deployment.md.

The processes are started once for the module and the tests run in order: the last one stops
the Chroma server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.postgres import new_database

# Slow under load: the first test also waits for the 2 replicas, 2 workers and Chroma to start.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
LF = str(BIN / "lf")
REDIS_DB = 12
PROJECT = "/v1/projects/team/kb"
PARAGRAPH = (
    "Section {i} of the {topic} notes. The {topic} team measured {n} samples on day {i}, "
    "compared them with the previous batch and wrote down what changed and why it matters."
)
NOTES = b"# Alpine\n\nGlaciers retreat every summer.\n\n## Snow\n\nFresh powder on ridges."
ASK = "Say hello in one short sentence."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def text_file(topic: str, paragraphs: int) -> bytes:
    body = "\n\n".join(PARAGRAPH.format(i=i, n=i * 7, topic=topic) for i in range(paragraphs))
    return body.encode()


def wait_until(ready: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300  # a busy machine: 4 Python processes start at once
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@dataclass
class Cluster:
    env: dict[str, str]
    root: Path
    database_url: str
    chroma: subprocess.Popen[bytes]
    chroma_port: int
    replicas: list[tuple[subprocess.Popen[bytes], int, Path]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, replica: int) -> str:
        return f"http://127.0.0.1:{self.replicas[replica][1]}"

    def http(self, replica: int) -> httpx.Client:
        return httpx.Client(base_url=self.url(replica), timeout=120)

    def spawn_replica(self, port: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
        """`lf start --no-worker`: the API alone."""
        command = [LF, "start", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
        with (self.root / f"replica-{port}.log").open("ab") as output:
            process = subprocess.Popen(
                [*command, "--data-dir", str(data_dir)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return process, port, data_dir

    def wait_replica(self, replica: tuple[subprocess.Popen[bytes], int, Path]) -> None:
        process, port, _ = replica

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/liveness").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "lf start --no-worker", process, self.root / f"replica-{port}.log")

    def start_replica(self, port: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
        replica = self.spawn_replica(port, data_dir)
        self.wait_replica(replica)
        return replica

    def start_worker(self, data_dir: Path) -> subprocess.Popen[bytes]:
        """`lf worker`: ingestion alone."""
        log = self.root / f"worker-{data_dir.name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [LF, "worker", "--data-dir", str(data_dir)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return process

    def data_dirs(self) -> list[Path]:
        return sorted(self.root.glob("data-*"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, then SIGKILL for it and its children (a worker's parse processes) if it lingers:
    a worker left running would take the next run's jobs from the same Redis db."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis = pytest.importorskip("redis")
    broker = f"redis://127.0.0.1:6379/{REDIS_DB}"
    try:
        queue = redis.Redis.from_url(broker, socket_connect_timeout=1)
        queue.flushdb()  # this test's own db number: jobs left by an earlier, killed run
        queue.close()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379: {exc}")
    with new_database() as database_url:
        root = tmp_path_factory.mktemp("cluster")
        chroma_port = free_port()
        chroma_log = root / "chroma.log"
        command = [
            str(BIN / "chroma"),
            "run",
            "--path",
            str(root / "chroma"),
            "--host",
            "127.0.0.1",
        ]
        with chroma_log.open("wb") as output:
            chroma = subprocess.Popen(
                [*command, "--port", str(chroma_port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        env = {
            **os.environ,
            "LF_DATABASE_URL": database_url,
            "LF_BROKER_URL": broker,
            "LF_BLOB_STORE": "database",
            "LF_CHROMA_URL": f"http://127.0.0.1:{chroma_port}",
            "LF_VERSION_CHECK_URL": "",
            # Small workers: two of them and two replicas share the machine's cores.
            "LF_WORKER_CONCURRENCY": "4",
            "LF_PARSE_PROCESSES": "1",
        }
        made = Cluster(env, root, database_url, chroma, chroma_port)
        try:

            def chroma_ready() -> bool:
                try:
                    url = f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat"
                    return httpx.get(url, timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(chroma_ready, "chroma run", chroma, chroma_log)
            migrated = subprocess.run(
                [LF, "migrate", "--data-dir", str(root / "data-migrate")],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert migrated.returncode == 0, migrated.stderr
            assert "state database at schema" in migrated.stdout
            for i in (1, 2):  # each kept as soon as it runs, so that it is stopped whatever happens
                made.workers.append(made.start_worker(root / f"data-worker-{i}"))
                made.replicas.append(made.spawn_replica(free_port(), root / f"data-api-{i}"))
            for replica in made.replicas:
                made.wait_replica(replica)
            yield made
        finally:
            for process in [*(r[0] for r in made.replicas), *made.workers]:
                stop(process)
            chroma.terminate()
            chroma.wait(timeout=30)
            queue = redis.Redis.from_url(broker)
            queue.flushdb()
            queue.close()


def wait_task(http: httpx.Client, task_id: str, *, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"{PROJECT}/tasks/{task_id}").json()
        if body["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return body
        assert time.monotonic() < deadline, f"task still {body['state']}: {body['meta']}"
        time.sleep(0.3)


def process(http: httpx.Client) -> str:
    response = http.post(f"{PROJECT}/datasets/documents/actions", json={"action_type": "process"})
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def query(http: httpx.Client, text: str, strategy: str) -> list[Any]:
    body = {"query": text, "retrieval_strategy": strategy, "top_k": 5}
    response = http.post(f"{PROJECT}/rag/query", json=body)
    assert response.status_code == 200, response.text
    results: list[Any] = response.json()["results"]
    return results


def chat(http: httpx.Client, content: str, **headers: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 12}
    body["temperature"] = 0
    response = http.post(f"{PROJECT}/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def chunks_stored(http: httpx.Client) -> int:
    stats = http.get(f"{PROJECT}/rag/stats")
    assert stats.status_code == 200, stats.text
    return int(stats.json()["chunk_count"])


def test_upload_on_one_replica_query_and_chat_on_the_other(cluster: Cluster) -> None:
    with cluster.http(0) as one, cluster.http(1) as two:
        health = {c["name"]: c for c in two.get("/health").json()["components"]}
        assert health["state_db"]["message"] == "postgresql: state, project configs and files"
        assert "redis" in health["broker"]["message"].lower()
        assert health["chroma_server"]["status"] == "healthy"

        created = one.post("/v1/projects/team", json={"name": "kb", "config_template": "rag"})
        assert created.status_code == 201, created.text
        uploads = {"notes.md": NOTES, "plain.txt": text_file("geology", 12)}
        for filename, content in uploads.items():
            sent = one.post(
                f"{PROJECT}/datasets/documents/data", files={"file": (filename, content)}
            )
            assert sent.status_code == 200, sent.text
        done = wait_task(two, process(one))
        assert done["state"] == "SUCCESS", done["meta"]["files"]
        stored = sum(f["chunks"] for f in done["meta"]["files"])
        assert stored > 0 and chunks_stored(one) == chunks_stored(two) == stored

        for strategy in ("basic_search", "hybrid_search"):
            asked = "Do glaciers retreat in summer?"
            assert query(one, asked, strategy) == query(two, asked, strategy)
        assert query(two, "Do glaciers retreat in summer?", "basic_search")[0]["metadata"][
            "source"
        ] == ("notes.md")

        answer = chat(two, ASK)
        session = answer.headers["X-Session-ID"]
        again = chat(one, ASK, **{"X-No-Session": "1"})
        assert again.json()["choices"][0]["message"] == answer.json()["choices"][0]["message"]
        chat(one, "And goodbye?", **{"X-Session-ID": session})
        histories = [h.get(f"{PROJECT}/chat/sessions/{session}/history").json() for h in (one, two)]
        assert histories[0] == histories[1]
        assert [m["role"] for m in histories[0]["messages"]] == ["user", "assistant"] * 2

    # Nothing of the project on any process's disk: configs, bytes and vectors are shared.
    for folder in cluster.data_dirs():
        assert not list(folder.rglob("llamafarm.yaml*")), folder
        assert not [p for p in folder.rglob("raw/*") if p.is_file()], folder
        assert not list(folder.rglob("chroma.sqlite3")), folder


def test_an_embedder_change_and_a_reindex_are_seen_by_every_process(cluster: Cluster) -> None:
    with cluster.http(0) as one, cluster.http(1) as two:
        database = one.get(f"{PROJECT}/rag/databases/main_db").json()
        strategies = database["embedding_strategies"]
        strategies[0]["config"]["max_length"] = 8  # other vectors
        changed = one.patch(
            f"{PROJECT}/rag/databases/main_db", json={"embedding_strategies": strategies}
        )
        assert changed.status_code == 200, changed.text
        asked = {"query": "Do glaciers retreat in summer?"}
        assert two.post(f"{PROJECT}/rag/query", json=asked).json()["needs_reindex"] is True
        refused = two.post(f"{PROJECT}/datasets/documents/actions", json={"action_type": "process"})
        assert refused.status_code == 409, refused.text

        started = one.post(f"{PROJECT}/rag/databases/main_db/reindex")
        assert started.status_code == 202, started.text
        done = wait_task(two, started.json()["task_id"])
        assert done["state"] == "SUCCESS", done["meta"]["files"]
        answer = two.post(f"{PROJECT}/rag/query", json=asked).json()
        assert answer["needs_reindex"] is False
        assert answer["results"][0]["metadata"]["source"] == "notes.md"
        assert one.get(f"{PROJECT}/rag/stats").json()["needs_reindex"] is False
    for folder in cluster.data_dirs():
        assert not list(folder.rglob("index.json")), folder


def test_a_killed_worker_loses_no_file_and_stores_nothing_twice(cluster: Cluster) -> None:
    import psycopg

    with cluster.http(0) as one, cluster.http(1) as two:
        before = chunks_stored(one)
        for i in range(6):
            content = text_file(f"subject{i}", 80)
            sent = two.post(
                f"{PROJECT}/datasets/documents/data", files={"file": (f"doc{i}.txt", content)}
            )
            assert sent.status_code == 200, sent.text
        task_id = process(two)
        pids = {w.pid for w in cluster.workers}
        deadline = time.monotonic() + 120
        victim = None
        with psycopg.connect(cluster.database_url, autocommit=True) as connection:
            while victim is None:
                assert time.monotonic() < deadline, "no file started"
                rows = connection.execute(
                    "SELECT worker FROM task_files WHERE task_id = %s AND state = 'STARTED'",
                    (task_id,),
                ).fetchall()
                started = {int(str(row[0]).rsplit(":", 1)[1]) for row in rows} & pids
                victim = next(iter(started), None)
                time.sleep(0.05)
        # As the OOM killer would: the other worker queues again what this one had started.
        os.kill(victim, signal.SIGKILL)
        done = wait_task(one, task_id)
        new = [f for f in done["meta"]["files"] if f["filename"].startswith("doc")]
        assert [f["state"] for f in new] == ["SUCCESS"] * 6, done["meta"]
        added = sum(f["chunks"] for f in new)
        assert chunks_stored(two) == before + added  # nothing half-stored, nothing twice
        hybrid = query(one, "subject3 samples", "hybrid_search")
        assert len({r["chunk_id"] for r in hybrid}) == len(hybrid)


def test_a_replica_restarted_mid_stream_keeps_the_sessions_turns(cluster: Cluster) -> None:
    with cluster.http(0) as one, cluster.http(1) as two:
        session = chat(two, ASK).headers["X-Session-ID"]
        kept = two.get(f"{PROJECT}/chat/sessions/{session}/history").json()
        assert len(kept["messages"]) == 2
        body = {
            "messages": [{"role": "user", "content": "Tell a long story about glaciers."}],
            "stream": True,
            "max_tokens": 400,
        }
        with two.stream(
            "POST", f"{PROJECT}/chat/completions", json=body, headers={"X-Session-ID": session}
        ) as response:
            assert next(response.iter_lines()).startswith("data: ")
            process_, port, data_dir = cluster.replicas[1]
            process_.kill()  # mid-stream, with no time to tidy up
            process_.wait()
        cluster.replicas[1] = cluster.start_replica(port, data_dir)
        for replica in (one, two):
            history = replica.get(f"{PROJECT}/chat/sessions/{session}/history")
            assert history.status_code == 200, history.text
            assert history.json()["messages"][:2] == kept["messages"]


def test_dropped_postgresql_connections_are_replaced(cluster: Cluster) -> None:
    import psycopg

    with cluster.http(0) as one:
        assert one.get(PROJECT).status_code == 200
        with psycopg.connect(cluster.database_url, autocommit=True) as connection:
            ended = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert ended is not None and ended[0] > 0
        # The pools' pre-ping finds the dead connections and opens new ones.
        assert one.get(PROJECT).status_code == 200
        assert query(one, "Do glaciers retreat in summer?", "hybrid_search")


def test_a_chroma_server_that_is_down_is_a_503_naming_it(cluster: Cluster) -> None:
    cluster.chroma.terminate()
    cluster.chroma.wait(timeout=30)
    with cluster.http(0) as one:
        body = {"query": "glaciers", "retrieval_strategy": "basic_search", "top_k": 5}
        response = one.post(f"{PROJECT}/rag/query", json=body)
        assert response.status_code == 503, response.text
        assert f"127.0.0.1:{cluster.chroma_port}" in response.json()["detail"]
        assert "Chroma" in response.json()["detail"]
        health = one.get("/health")
        assert health.status_code == 503
        assert health.json()["services"]["chroma_server"] == "unhealthy"
