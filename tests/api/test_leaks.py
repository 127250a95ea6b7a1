"""Nothing outlives what it belongs to: uploads racing a dataset delete, store clients of a
deleted project or database."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.rag.stores import create_store
from llamafarm.settings import Settings
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.test_rag import BASE, ingest
from tests.rag.test_embedders import Reply, Service, wire
from tests.rag.test_embedders import serve as serve

UPLOADS = 30
ROUNDS = 3
STRATEGY = "default_processor"


def upload(http: httpx.Client, name: str, go: threading.Barrier, codes: list[int]) -> None:
    go.wait()
    files = {"file": (f"{name}.txt", f"file {name} ".encode() * 50)}
    codes.append(http.post(f"{BASE}/datasets/race/data", files=files).status_code)


def test_uploads_racing_a_dataset_delete_never_come_back(
    live_server: str, settings: Settings
) -> None:
    """Seen before the fix: some of the 30 uploads landed in the dataset made again after the
    delete, and their bytes stayed on disk with no record."""
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        for round_ in range(ROUNDS):
            go = threading.Barrier(UPLOADS + 1)
            codes: list[int] = []
            body = {"name": "race", "database": "main_db", "data_processing_strategy": STRATEGY}
            assert http.post(f"{BASE}/datasets", json=body).status_code == 201
            threads = [
                threading.Thread(target=upload, args=(http, f"{round_}-{i}", go, codes))
                for i in range(UPLOADS)
            ]
            for thread in threads:
                thread.start()
            go.wait()
            assert http.delete(f"{BASE}/datasets/race").status_code == 200
            for thread in threads:
                thread.join()
            assert set(codes) <= {200, 404}, codes
            assert http.post(f"{BASE}/datasets", json=body).status_code == 201
            listed = http.get(f"{BASE}/datasets", params={"include_extra_details": True})
            race = next(d for d in listed.json()["datasets"] if d["name"] == "race")
            assert race["files"] == [], f"round {round_}: {len(race['files'])} files came back"
            assert http.delete(f"{BASE}/datasets/race").status_code == 200
            raw = settings.projects_dir / "acme" / "bot" / "raw"
            left = sorted(p.name for p in raw.iterdir()) if raw.exists() else []
            assert left == [], f"round {round_}: {len(left)} blobs with no record"


def open_files() -> list[str]:
    """Where this process's file descriptors point."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed since listed (the listing's own descriptor among them)
    return targets


def under(folder: Path) -> list[str]:
    return [t for t in open_files() if t.startswith(str(folder.parent))]


CYCLES = 4


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_deleting_a_project_closes_its_stores(client: TestClient, settings: Settings) -> None:
    """Seen before the fix: ~6.5 descriptors kept per cycle, on deleted chroma.sqlite3 files
    (and a project made again under the same name could not be written)."""
    folder = settings.projects_dir / "acme" / "bot"
    counts = []
    for _ in range(CYCLES):
        assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        ingest(client, {"a.txt": b"Apple trees blossom in spring."})
        assert client.post(f"{BASE}/rag/query", json={"query": "apples"}).status_code == 200
        assert under(folder), "the store is open while the project exists"
        assert client.delete(BASE).status_code == 200
        assert under(folder) == []
        counts.append(len(open_files()))
    assert counts[-1] - counts[0] < 3, counts  # one cycle leaked 6-7 before


@pytest.mark.usefixtures("project")
def test_deleting_a_database_closes_its_store(client: TestClient, settings: Settings) -> None:
    config = client.get(BASE).json()["project"]["config"]
    main = next(d for d in config["rag"]["databases"] if d["name"] == "main_db")
    body = {**main, "name": "extra_db", "config": {}}
    created = client.post(f"{BASE}/rag/databases", json=body)
    assert created.status_code == 201, created.text
    dataset = {"name": "extra", "database": "extra_db", "data_processing_strategy": STRATEGY}
    assert client.post(f"{BASE}/datasets", json=dataset).status_code == 201
    ingest(client, {"a.txt": b"Apple trees blossom in spring."}, dataset="extra")
    store = settings.projects_dir / "acme" / "bot" / "stores" / "extra_db"
    assert [t for t in open_files() if t.startswith(str(store))]
    assert client.delete(f"{BASE}/datasets/extra").status_code == 200
    deleted = client.delete(f"{BASE}/rag/databases/extra_db")
    assert deleted.status_code == 200, deleted.text
    assert [t for t in open_files() if t.startswith(str(store))] == []


@pytest.mark.usefixtures("project")
def test_chunks_stored_after_their_dataset_went_are_removed(
    client: TestClient, serve: Callable[[Reply], Service]
) -> None:
    """A worker embedding a file while its dataset is deleted stores the chunks after the
    delete removed the dataset's; they must go again, not stay searchable in the database."""
    arrived, go = threading.Event(), threading.Event()

    def reply(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        arrived.set()
        go.wait(60)  # the embedding answer comes after the dataset is gone
        return wire(path, body)

    service = serve(reply)
    config = client.get(BASE).json()["project"]["config"]
    main = next(d for d in config["rag"]["databases"] if d["name"] == "main_db")
    remote = {
        "name": "remote",
        "type": "OpenAIEmbedder",
        "config": {"base_url": f"{service.url}/v1", "model": "m", "dimension": 4},
    }
    database = {
        **main,
        "name": "hooked_db",
        "config": {},
        "embedding_strategies": [remote],
        "default_embedding_strategy": "remote",
    }
    assert client.post(f"{BASE}/rag/databases", json=database).status_code == 201
    dataset = {"name": "hooked", "database": "hooked_db", "data_processing_strategy": STRATEGY}
    assert client.post(f"{BASE}/datasets", json=dataset).status_code == 201
    files = {"file": ("a.txt", b"Apple trees blossom in spring.")}
    assert client.post(f"{BASE}/datasets/hooked/data", files=files).status_code == 200
    task = client.post(f"{BASE}/datasets/hooked/actions", json={"action_type": "process"})
    assert task.status_code == 202, task.text

    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    with state.db.session() as session:
        (file_id,) = session.scalars(select(TaskFile.id)).all()
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(run_file(context, file_id)))
    worker.start()
    assert arrived.wait(60)
    assert client.delete(f"{BASE}/datasets/hooked").status_code == 200
    go.set()
    worker.join()

    assert outcome == ["REVERTED"]
    stored = next(
        d for d in state.projects.load("acme", "bot").rag.databases if d.name == "hooked_db"
    )
    project_dir = state.projects.path("acme", "bot")
    store = create_store(stored, project_dir=project_dir, clients=state.models.chroma)
    assert store.count({"dataset": "hooked"}) == 0


@pytest.mark.usefixtures("project")
def test_a_worker_closes_the_stores_of_projects_deleted_elsewhere(
    client: TestClient, settings: Settings
) -> None:
    """A worker is told of no delete: its next file closes what it holds of deleted folders."""
    folder = settings.projects_dir / "acme" / "bot"
    ingest(client, {"a.txt": b"Apple trees blossom in spring."})  # this process's clients
    state = client.app.state  # type: ignore[attr-defined]
    state.projects.delete("acme", "bot")  # as the API process would, unseen by this one
    assert under(folder), "still open: nothing has told this process"
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    assert run_file(context, 10_000) == "MISSING"
    assert under(folder) == []
