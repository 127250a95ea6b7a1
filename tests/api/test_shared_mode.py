"""Shared mode (`LF_BLOB_STORE=database`): two servers with data dirs of their own and one state
database see the same projects, config history and uploaded files, and with a Chroma server
the same index records (a reindex's switch, an embedder change); nothing of a project is left
in either data dir but scratch."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llamafarm.api import create_app
from llamafarm.config.models import EmbeddingStrategy
from llamafarm.datasets.blobs import DatabaseBlobs
from llamafarm.projects import ProjectStore
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.index import fingerprint_of
from llamafarm.rag.stores import owner_clients
from llamafarm.settings import Settings
from llamafarm.state import StateDB, TaskFile
from llamafarm.state.tables import (
    Blob,
    BlobChunk,
    DatabaseIndex,
    LexicalChunk,
    LexicalStore,
    ProjectDocument,
)
from llamafarm.tasks.processing import WorkerContext, run_file
from llamafarm.tasks.reindex import run_reindex
from tests.api.test_index_lifecycle import embedding
from tests.api.test_rag import FILES

BASE = "/v1/projects/acme/bot"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


def shared(tmp_path: Path, name: str, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / name,
        database_url=url,
        blob_store="database",
        version_check_url="",
        allowed_hosts=["testserver"],
    )


@pytest.fixture
def replicas(tmp_path: Path, state_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    first = TestClient(create_app(shared(tmp_path, "one", state_url)))
    second = TestClient(create_app(shared(tmp_path, "two", state_url)))
    with first, second:
        yield first, second


def test_two_replicas_share_projects_and_their_config_history(
    replicas: tuple[TestClient, TestClient], tmp_path: Path
) -> None:
    one, two = replicas
    created = one.post("/v1/projects/acme", json={"name": "bot"})
    assert created.status_code == 201, created.text
    first = created.json()["project"]["config"]
    assert two.get(BASE).json()["project"]["config"] == first
    assert [p["name"] for p in two.get("/v1/projects/acme").json()["projects"]] == ["bot"]
    health = {c["name"]: c for c in two.get("/health").json()["components"]}
    assert health["state_db"]["message"].endswith(": state, project configs and files")
    assert two.post("/v1/projects/acme", json={"name": "bot"}).status_code == 409
    assert one.get(f"{BASE}/config/previous").status_code == 404

    changed = copy.deepcopy(first)
    changed["prompts"][0]["messages"][0]["content"] = "Answer in one sentence."
    assert two.put(BASE, json={"config": changed}).status_code == 200
    # The other replica's parsed copy is of an older version: it reads the new one.
    assert one.get(BASE).json()["project"]["config"] == changed
    assert one.get(f"{BASE}/config/previous").json() == {"config": first}
    assert not list((tmp_path / "one").rglob("llamafarm.yaml*"))
    assert not list((tmp_path / "two").rglob("llamafarm.yaml*"))

    assert two.delete(BASE).status_code == 200
    assert one.get(BASE).status_code == 404
    assert one.get("/v1/projects/acme").json()["projects"] == []


def test_uploaded_bytes_are_in_the_database_once_and_go_with_the_project(
    replicas: tuple[TestClient, TestClient], tmp_path: Path, state_url: str
) -> None:
    one, two = replicas
    assert one.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    content = b"glaciers " * 300_000  # 2.7 MB: three chunks
    sent = one.post(f"{BASE}/datasets/documents/data", files={"file": ("a.txt", content)})
    assert sent.status_code == 200, sent.text
    file_hash = hashlib.sha256(content).hexdigest()
    again = two.post(f"{BASE}/datasets/documents/data", files={"file": ("b.txt", content)})
    assert again.json()["skipped"] is True
    assert not list((tmp_path / "one").rglob("raw/*"))

    db = StateDB(state_url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Blob)) == 1
            assert session.scalar(select(func.count()).select_from(BlobChunk)) == 3
        scratch = tmp_path / "worker" / "raw"
        with DatabaseBlobs(db, "acme", "bot", scratch=scratch).local(file_hash) as path:
            assert path.parent == scratch and path.read_bytes() == content
        assert not list(scratch.iterdir())  # removed after use

        assert two.delete(BASE).status_code == 200
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Blob)) == 0
            assert session.scalar(select(func.count()).select_from(BlobChunk)) == 0
            assert session.scalar(select(func.count()).select_from(ProjectDocument)) == 0
    finally:
        db.close()


def test_a_failed_upload_leaves_no_bytes(
    replicas: tuple[TestClient, TestClient], state_url: str
) -> None:
    one, _ = replicas
    assert one.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    empty = one.post(f"{BASE}/datasets/documents/data", files={"file": ("a.txt", b"")})
    assert empty.status_code == 400 and empty.json() == {"detail": "File is empty"}
    db = StateDB(state_url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Blob)) == 0
    finally:
        db.close()


@pytest.fixture
def remote(
    tmp_path: Path, postgres_url: str, chroma_url: str
) -> Iterator[tuple[TestClient, TestClient, WorkerContext, str]]:
    """Two replicas and a worker, each with a data dir of its own, on one PostgreSQL state
    database and one Chroma server (the deployment of docs/deployment.md); the base URL of a
    project of the rag template with FILES processed through the first replica."""
    replica = [
        Settings(**{**shared(tmp_path, name, postgres_url).model_dump(), "chroma_url": chroma_url})
        for name in ("one", "two", "worker")
    ]
    db = StateDB(postgres_url)
    worker = WorkerContext(
        db=db,
        projects=ProjectStore(replica[2].projects_dir, shared=db),
        worker="test",
        models=ModelCache(chroma=owner_clients(replica[2], db.engine)),
    )
    # Its own name: the session's Chroma server keeps other tests' collections.
    name = f"bot{uuid.uuid4().hex[:8]}"
    base = f"/v1/projects/acme/{name}"
    try:
        with TestClient(create_app(replica[0])) as one, TestClient(create_app(replica[1])) as two:
            created = one.post("/v1/projects/acme", json={"name": name, "config_template": "rag"})
            assert created.status_code == 201, created.text
            for filename, content in FILES.items():
                sent = one.post(
                    f"{base}/datasets/documents/data", files={"file": (filename, content)}
                )
                assert sent.status_code == 200, sent.text
            queued = one.post(f"{base}/datasets/documents/actions", json={"action_type": "process"})
            assert queued.status_code == 202, queued.text
            with db.session() as session:
                pending = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING"))
                assert [run_file(worker, file_id) for file_id in pending] == ["SUCCESS"] * 3
            yield one, two, worker, base
            if two.get(base).status_code == 200:  # not deleted by the test
                assert two.delete(base).status_code == 200
            with db.session() as session:  # the record goes with the project
                assert session.scalar(select(func.count()).select_from(DatabaseIndex)) == 0
    finally:
        worker.close()
        db.close()


ORIGINAL = EmbeddingStrategy.model_validate(embedding()[0])


def ask(client: TestClient, base: str) -> dict[str, Any]:
    response = client.post(f"{base}/rag/query", json={"query": "Why do glaciers retreat?"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def change_embedder(client: TestClient, base: str) -> None:
    strategies = embedding(max_length=8)  # other vectors
    changed = client.patch(
        f"{base}/rag/databases/main_db", json={"embedding_strategies": strategies}
    )
    assert changed.status_code == 200, changed.text


def served(worker: WorkerContext) -> tuple[int, str]:
    with worker.db.session() as session:
        row = session.scalars(select(DatabaseIndex)).one()
        return row.generation, row.fingerprint


def test_an_embedder_changed_through_one_replica_is_seen_by_the_other(
    remote: tuple[TestClient, TestClient, WorkerContext, str], tmp_path: Path
) -> None:
    one, two, worker, base = remote
    assert ask(two, base)["needs_reindex"] is False and ask(two, base)["results"]
    # A file queued through replica two before the change, processed after it.
    sent = two.post(f"{base}/datasets/documents/data", files={"file": ("new.txt", b"Fjords.")})
    assert sent.status_code == 200, sent.text
    queued = two.post(f"{base}/datasets/documents/actions", json={"action_type": "process"})
    assert queued.status_code == 202, queued.text
    with worker.db.session() as session:
        (late,) = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING"))

    change_embedder(one, base)
    # Replica two never wrote the record, and has no file of it: the row tells it.
    assert ask(two, base)["needs_reindex"] is True
    assert two.get(f"{base}/rag/health").json()["needs_reindex"] is True
    assert two.get(f"{base}/rag/stats").json()["needs_reindex"] is True
    refused = two.post(f"{base}/datasets/documents/actions", json={"action_type": "process"})
    assert refused.status_code == 409, refused.text
    assert "lf rag reindex main_db" in refused.json()["detail"]
    # Nor does the worker (another machine) store another model's vectors.
    assert run_file(worker, late) == "FAILURE"
    with worker.db.session() as session:
        assert "needs a reindex" in (session.get_one(TaskFile, late).error or "")
    assert served(worker) == (0, fingerprint_of(ORIGINAL))
    assert not list(tmp_path.rglob("index.json"))


def test_a_reindex_through_one_replica_serves_on_the_other(
    remote: tuple[TestClient, TestClient, WorkerContext, str], tmp_path: Path
) -> None:
    one, two, worker, base = remote
    before = ask(two, base)
    change_embedder(one, base)
    started = one.post(f"{base}/rag/databases/main_db/reindex")
    assert started.status_code == 202, started.text
    assert run_reindex(worker, started.json()["task_id"]) == "SUCCESS"

    # The switch is one row: replica two, with an empty data dir, serves generation 1.
    assert served(worker)[0] == 1
    after = ask(two, base)
    assert after["needs_reindex"] is False
    assert [r["metadata"]["source"] for r in after["results"]][:1] == ["glaciers.md"]
    assert before["results"][0]["score"] != after["results"][0]["score"]  # the new vectors
    stats = two.get(f"{base}/rag/stats").json()
    assert stats["needs_reindex"] is False and stats["chunk_count"] > 0
    assert two.get(f"{base}/rag/health").json()["needs_reindex"] is False
    again = two.post(f"{base}/datasets/documents/actions", json={"action_type": "process"})
    assert again.status_code == 202, again.text  # writable again, from any replica
    assert not list(tmp_path.rglob("index.json"))
    assert not list((tmp_path / "two").rglob("stores/*/*"))

    # Deleted with its collection, the database loses its record (as the embedded store's
    # folder takes index.json with it).
    assert two.delete(f"{base}/datasets/documents").status_code == 200
    assert two.delete(f"{base}/rag/databases/main_db").json()["collection_deleted"] is True
    with worker.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DatabaseIndex)) == 0


def test_a_deleted_project_leaves_nothing_on_the_chroma_server(
    remote: tuple[TestClient, TestClient, WorkerContext, str], chroma_url: str
) -> None:
    import chromadb

    one, two, worker, base = remote
    name = base.rsplit("/", 1)[1]
    host, port = chroma_url.removeprefix("http://").split(":")
    server = chromadb.HttpClient(host=host, port=int(port))

    def collections() -> list[str]:
        return [c.name for c in server.list_collections() if f".{name}." in c.name]

    def lexical_rows() -> int:
        with worker.db.session() as session:
            chunks = session.scalar(select(func.count()).select_from(LexicalChunk))
            stores = session.scalar(select(func.count()).select_from(LexicalStore))
            return (chunks or 0) + (stores or 0)

    assert len(collections()) == 1 and lexical_rows() > 0
    assert one.delete(base).status_code == 200
    assert collections() == []  # not only the folder: the collection on the server
    assert lexical_rows() == 0  # and its BM25 rows
    assert two.get(base).status_code == 404
