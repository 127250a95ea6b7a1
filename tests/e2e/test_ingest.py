"""Upload, process, re-process, remove and cancel through a real server and a real worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from llamafarm.rag.stores import ChromaStore
from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent.parent / "fixtures"
PARAGRAPH = (
    "Section {i} of the {topic} notes. The {topic} team measured {n} samples on day {i}, "
    "compared them with the previous batch and wrote down what changed and why it matters."
)


NOTES = b"# Alpine\n\nGlaciers retreat every summer.\n\n## Snow\n\nFresh powder on ridges."


def new_dataset(name: str, database: str = "main_db") -> dict[str, str]:
    return {"name": name, "database": database, "data_processing_strategy": "default_processor"}


def text_file(topic: str, paragraphs: int) -> bytes:
    body = "\n\n".join(PARAGRAPH.format(i=i, n=i * 7, topic=topic) for i in range(paragraphs))
    return body.encode()


class Api:
    def __init__(self, server: Server, namespace: str) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.base = f"/v1/projects/{namespace}/kb"
        self.namespace = namespace
        assert self.http.post(f"/v1/projects/{namespace}", json={"name": "kb"}).status_code == 201

    def upload(self, dataset: str, name: str, content: bytes) -> httpx.Response:
        return self.http.post(
            f"{self.base}/datasets/{dataset}/data", files={"file": (name, content)}
        )

    def process(self, dataset: str) -> str:
        response = self.http.post(
            f"{self.base}/datasets/{dataset}/actions", json={"action_type": "process"}
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["message"] == "Accepted"
        assert body["task_uri"].endswith(f"{self.base}/tasks/{body['task_id']}")
        return str(body["task_id"])

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(self, task_id: str, *, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (body := self.task(task_id))["state"] not in ("SUCCESS", "FAILURE", "REVOKED"):
            assert time.monotonic() < deadline, f"task still {body['state']}: {body['meta']}"
            time.sleep(0.3)
        return body

    def query(self, text: str, *, strategy: str = "basic", **options: Any) -> list[Any]:
        body = {"query": text, "retrieval_strategy": strategy, "top_k": 20, **options}
        response = self.http.post(f"{self.base}/rag/query", json=body)
        assert response.status_code == 200, response.text
        results: list[Any] = response.json()["results"]
        return results

    def store(self) -> ChromaStore:
        path = self.server.data_dir / "projects" / self.namespace / "kb" / "stores" / "main_db"
        return ChromaStore(path=path, collection_name="documents")


@pytest.fixture
def make_api() -> Iterator[Callable[[Server, str], Api]]:
    made: list[Api] = []

    def make(server: Server, namespace: str) -> Api:
        made.append(Api(server, namespace))
        return made[-1]

    yield make
    for api in made:
        api.http.close()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["filename"]: f for f in body["meta"]["files"]}


def ingest_round_trip(api: Api) -> None:
    pdf = (FIXTURES / "copy-protected.pdf").read_bytes()
    uploads = {
        "notes.md": NOTES,
        "plain.txt": text_file("geology", 12),
        "protected.pdf": pdf,
        "locked.pdf": (FIXTURES / "password.pdf").read_bytes(),
        "noise.bin": bytes(range(256)) * 64,
    }
    hashes = {}
    for name, content in uploads.items():
        response = api.upload("documents", name, content)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["filename"], body["processed"], body["skipped"]) == (name, False, False)
        hashes[name] = body["hash"]

    duplicate = api.upload("documents", "copy of notes.md", uploads["notes.md"]).json()
    assert duplicate["skipped"] is True and duplicate["hash"] == hashes["notes.md"]

    first = api.wait(api.process("documents"))
    files = by_name(first)
    assert first["state"] == "FAILURE"  # some files failed, the rest were processed
    assert first["meta"]["current"] == first["meta"]["total"] == 5
    for name in ("notes.md", "plain.txt", "protected.pdf"):
        assert files[name]["state"] == "SUCCESS", files[name]
        assert files[name]["chunks"] > 0
    assert files["locked.pdf"]["state"] == "FAILURE"
    assert "password" in files["locked.pdf"]["error"]
    assert files["noise.bin"]["state"] == "FAILURE"
    assert "noise.bin" in files["noise.bin"]["error"]
    assert first["result"]["processed_files"] == 3
    assert first["result"]["failed_files"] == 2

    store = api.store()
    for name in ("notes.md", "plain.txt", "protected.pdf"):
        stored = store.count({"dataset": "documents", "file_hash": hashes[name]})
        assert stored == files[name]["chunks"]
    total = store.count()
    assert total == sum(files[n]["chunks"] for n in ("notes.md", "plain.txt", "protected.pdf"))

    listing = api.http.get(f"{api.base}/datasets").json()["datasets"][0]
    assert sorted(listing["files"]) == sorted(hashes.values())
    details = {d["original_filename"]: d for d in listing["details"]["file_details"]}
    assert details["notes.md"]["processed"] is True
    assert details["locked.pdf"]["processed"] is False

    again = api.wait(api.process("documents"))
    assert {n: f["state"] for n, f in by_name(again).items()} == {
        "notes.md": "SKIPPED",
        "plain.txt": "SKIPPED",
        "protected.pdf": "SKIPPED",
        "locked.pdf": "FAILURE",
        "noise.bin": "FAILURE",
    }
    assert again["result"]["skipped_files"] == 3
    assert store.count() == total

    removed = api.http.delete(f"{api.base}/datasets/documents/data/{hashes['plain.txt']}")
    assert removed.status_code == 200
    assert removed.json()["chunks_removed"] == files["plain.txt"]["chunks"]
    assert store.count({"file_hash": hashes["plain.txt"]}) == 0
    assert store.count() == total - files["plain.txt"]["chunks"]

    # Queries see what is stored, from the vectors and from the BM25 index alike.
    found = api.query("Do glaciers retreat in summer?", top_k=1)
    assert [r["metadata"]["source"] for r in found] == ["notes.md"]
    for strategy in ("basic", "hybrid"):
        sources = {r["metadata"]["source"] for r in api.query("geology samples", strategy=strategy)}
        assert "plain.txt" not in sources
    assert api.query("geology", strategy="hybrid", hybrid_alpha=0.0) == []


def test_ingest_with_the_embedded_broker(start_server: Any, make_api: Any) -> None:
    api = make_api(start_server(), "fs")
    ingest_round_trip(api)

    # The bytes stay until asked to go, and only go when no dataset has them.
    raw = api.server.data_dir / "projects" / "fs" / "kb" / "raw"
    notes = api.upload(
        "documents",
        "n.md",
        b"# Alpine\n\nGlaciers retreat every summer.\n\n## Snow\n\nFresh powder on ridges.",
    ).json()["hash"]
    assert (raw / notes).exists()
    gone = api.http.delete(f"{api.base}/datasets/documents/data/{notes}?remove_from_disk=true")
    assert gone.json()["removed_from_disk"] is True
    assert not (raw / notes).exists()

    # auto_process queues the uploaded file alone, and nothing for content already stored.
    response = api.http.post(
        f"{api.base}/datasets/documents/data?auto_process=true",
        files={"file": ("fresh.txt", text_file("fresh", 3))},
    ).json()
    assert response["task_uri"].endswith(response["task_id"])
    done = api.wait(response["task_id"])
    assert [(f["filename"], f["state"]) for f in done["meta"]["files"]] == [
        ("fresh.txt", "SUCCESS")
    ]
    again = api.http.post(
        f"{api.base}/datasets/documents/data?auto_process=true",
        files={"file": ("fresh-copy.txt", text_file("fresh", 3))},
    ).json()
    assert again["skipped"] is True and again["processed"] is True
    assert "task_id" not in again

    # A second dataset: deleting it takes its chunks, its files and its config entry.
    created = api.http.post(
        f"{api.base}/datasets",
        json={
            "name": "extra",
            "database": "main_db",
            "data_processing_strategy": "default_processor",
        },
    )
    assert created.status_code == 201
    assert created.json() == {
        "dataset": {
            "name": "extra",
            "database": "main_db",
            "data_processing_strategy": "default_processor",
            "files": [],
        }
    }
    extra = api.upload("extra", "extra.txt", text_file("botany", 8)).json()["hash"]
    assert api.wait(api.process("extra"))["state"] == "SUCCESS"
    assert api.store().count({"dataset": "extra"}) > 0
    deleted = api.http.delete(f"{api.base}/datasets/extra")
    assert deleted.json()["dataset"]["files"] == [extra]
    assert api.store().count({"dataset": "extra"}) == 0
    assert not (raw / extra).exists()
    names = [d["name"] for d in api.http.get(f"{api.base}/datasets").json()["datasets"]]
    assert names == ["documents"]


def test_cancel_reverts_stored_files(start_server: Any, make_api: Any) -> None:
    api = make_api(start_server(), "cancel")
    for i in range(24):
        assert api.upload("documents", f"doc{i}.txt", text_file(f"topic{i}", 60)).status_code == 200
    task_id = api.process("documents")
    deadline = time.monotonic() + 120
    while not any(f["state"] == "SUCCESS" for f in api.task(task_id)["meta"]["files"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    cancel = api.http.delete(f"{api.base}/tasks/{task_id}").json()
    assert cancel["cancelled"] is True and cancel["already_cancelled"] is False
    assert cancel["files_reverted"] >= 1
    assert cancel["pending_tasks_cancelled"] >= 1
    assert cancel["message"].startswith("Task cancelled")

    deadline = time.monotonic() + 60
    body = api.task(task_id)
    while any(f["state"] == "STARTED" for f in body["meta"]["files"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        body = api.task(task_id)
    assert body["state"] == "REVOKED"
    states = {f["state"] for f in body["meta"]["files"]}
    assert states <= {"REVERTED", "CANCELLED"}, states
    assert api.store().count({"dataset": "documents"}) == 0
    assert api.query("topic0 samples", strategy="hybrid") == []

    repeat = api.http.delete(f"{api.base}/tasks/{task_id}").json()
    assert repeat["already_cancelled"] is True
    assert repeat["files_reverted"] == cancel["files_reverted"]


@pytest.fixture
def redis_url() -> str:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/15"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.delete("llamafarm")  # jobs left in the queue by an earlier, killed run
        client.close()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379: {exc}")
    return url


def test_ingest_on_redis_and_postgresql(
    start_server: Any, make_api: Any, redis_url: str, postgres_url: str
) -> None:
    server = start_server(LF_BROKER_URL=redis_url, LF_DATABASE_URL=postgres_url)
    ingest_round_trip(make_api(server, "scale"))
    server.stop()  # before its database is dropped


def test_bad_input(start_server: Any, make_api: Any) -> None:
    api = make_api(start_server(LF_EMBEDDED_WORKER="false", LF_MAX_UPLOAD_MB="1"), "bad")
    cases = [
        (api.http.get("/v1/projects/bad/nope/datasets"), 404),
        (api.http.post(f"{api.base}/datasets/nope/actions", json={"action_type": "process"}), 404),
        (api.http.post(f"{api.base}/datasets/documents/actions", json={"action_type": "zap"}), 422),
        (api.http.post(f"{api.base}/datasets/documents/actions", json={}), 422),
        (api.upload("documents", "empty.txt", b""), 400),
        (api.upload("documents", "big.txt", b"x" * (3 << 20)), 413),
        (api.upload("nope", "a.txt", b"a"), 404),
        (api.http.post(f"{api.base}/datasets/%2e%2e/data", files={"file": ("a", b"a")}), 400),
        (api.http.post(f"{api.base}/datasets/documents/data"), 422),
        (api.http.delete(f"{api.base}/datasets/documents/data/{'0' * 64}"), 404),
        (api.http.delete(f"{api.base}/datasets/documents/data/not-a-hash"), 400),
        (api.http.get(f"{api.base}/tasks/{'f' * 32}"), 404),
        (api.http.delete(f"{api.base}/tasks/{'f' * 32}"), 404),
        (api.http.post(f"{api.base}/datasets", json={"name": "x", "database": "main_db"}), 422),
        (
            api.http.post(
                f"{api.base}/datasets",
                json={
                    "name": "x",
                    "database": "nope",
                    "data_processing_strategy": "default_processor",
                },
            ),
            400,
        ),
        (
            api.http.post(
                f"{api.base}/datasets",
                json={
                    "name": "documents",
                    "database": "main_db",
                    "data_processing_strategy": "default_processor",
                },
            ),
            409,
        ),
        (
            api.http.post(
                f"{api.base}/datasets",
                json={
                    "name": "../x",
                    "database": "main_db",
                    "data_processing_strategy": "default_processor",
                },
            ),
            400,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert list(response.json()) == ["detail"] and isinstance(response.json()["detail"], str)

    # A task of another project is not visible from this one.
    other = make_api(api.server, "bad2")
    assert other.upload("documents", "a.txt", b"alpha beta").status_code == 200
    task_id = other.process("documents")
    assert api.http.get(f"{api.base}/tasks/{task_id}").status_code == 404
    assert api.http.delete(f"{api.base}/tasks/{task_id}").status_code == 404
    assert other.task(task_id)["state"] == "PENDING"  # no worker in this server


def test_a_killed_worker_loses_no_file(start_server: Any, make_api: Any) -> None:
    server = start_server()
    api = make_api(server, "kill")
    for i in range(8):
        assert (
            api.upload("documents", f"doc{i}.txt", text_file(f"subject{i}", 60)).status_code == 200
        )
    task_id = api.process("documents")
    deadline = time.monotonic() + 120
    while not any(f["state"] == "STARTED" for f in api.task(task_id)["meta"]["files"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # Kill the worker mid-file, as the OOM killer would: lf start runs a new one, which
    # queues again the files the dead one had started.
    [worker] = psutil.Process(server.process.pid).children()
    worker.kill()
    body = api.wait(task_id)
    [replacement] = psutil.Process(server.process.pid).children()
    assert replacement.pid != worker.pid
    assert body["state"] == "SUCCESS", body["meta"]["files"]
    chunks = sum(f["chunks"] for f in body["meta"]["files"])
    assert chunks > 0
    assert api.store().count() == chunks  # nothing half-stored, nothing twice
