"""Shared mode (`LF_BLOB_STORE=database`): two servers with data dirs of their own and one state
database see the same projects, config history and uploaded files; nothing of a project is
left in either data dir but scratch."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llamafarm.api import create_app
from llamafarm.datasets.blobs import DatabaseBlobs
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from llamafarm.state.tables import Blob, BlobChunk, ProjectDocument

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


def test_a_reindex_is_refused_in_shared_mode(replicas: tuple[TestClient, TestClient]) -> None:
    one, _ = replicas
    assert (
        one.post("/v1/projects/acme", json={"name": "bot", "config_template": "rag"}).status_code
        == 201
    )
    refused = one.post(f"{BASE}/rag/databases/main_db/reindex")
    assert refused.status_code == 409, refused.text
    assert "shared mode" in refused.json()["detail"]
