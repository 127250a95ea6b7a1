"""A database exported, imported into a fresh data dir and compacted, in process."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.settings import Settings
from llamafarm.tasks.reindex import run_reindex
from tests.api.test_index_lifecycle import embedding, notes, process
from tests.api.test_rag import BASE, FILES
from tests.api.test_reindex import store_folder, worker

QUESTIONS = ("Why do glaciers retreat?", "dishwasher error", "how many samples on day 4")


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[TestClient]:
    """Another server, on its own data dir, with its own `acme/bot`."""
    settings = Settings(
        data_dir=tmp_path / "other", version_check_url="", allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as other:
        assert other.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        yield other


def top10(client: TestClient, question: str, **options: Any) -> list[tuple[str, float]]:
    answer = client.post(f"{BASE}/rag/query", json={"query": question, "top_k": 10, **options})
    assert answer.status_code == 200, answer.text
    return [(r["chunk_id"], round(r["score"], 5)) for r in answer.json()["results"]]


def export(client: TestClient) -> bytes:
    response = client.get(f"{BASE}/rag/databases/main_db/export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


def import_(client: TestClient, archive: bytes, database: str = "main_db") -> Any:
    return client.post(
        f"{BASE}/rag/databases/{database}/import", files={"file": ("a.zip", archive)}
    )


def archive_of(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in members.items():
            zf.writestr(name.replace("_", "."), content)
    return buffer.getvalue()


@pytest.mark.usefixtures("project")
def test_export_then_import_into_a_fresh_data_dir_answers_the_same(
    client: TestClient, fresh: TestClient
) -> None:
    process(client, "documents", {**FILES, "notes.md": notes()})
    total = client.get(f"{BASE}/rag/stats").json()["chunk_count"]
    assert total > 10
    archive = export(client)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        lines = zf.read("chunks.jsonl").decode().splitlines()
        vectors = np.load(io.BytesIO(zf.read("vectors.npy")))
    stats = client.get(f"{BASE}/rag/stats").json()
    assert manifest["format"] == "llamafarm-rag-archive" and manifest["version"] == 1
    assert manifest["fingerprint"] == stats["index_fingerprint"]
    assert (manifest["count"], manifest["dimension"]) == (total, 384) == vectors.shape
    assert len(lines) == total and vectors.dtype == np.float32
    assert {"id", "text", "metadata"} == set(json.loads(lines[0]))

    imported = import_(fresh, archive)
    assert imported.status_code == 200, imported.text
    assert imported.json() == {
        "database": "main_db",
        "fingerprint": manifest["fingerprint"],
        "imported_chunks": total,
        "total_chunks": total,
    }
    for question in QUESTIONS:
        for strategy in ("basic_search", "hybrid_search"):
            expected = top10(client, question, retrieval_strategy=strategy)
            assert len(expected) == 10
            assert top10(fresh, question, retrieval_strategy=strategy) == expected
    # Upserted by id: the same archive again adds nothing.
    assert import_(fresh, archive).json()["total_chunks"] == total


@pytest.mark.usefixtures("project")
def test_an_archive_of_another_embedder_or_not_an_archive_is_refused(
    client: TestClient, fresh: TestClient
) -> None:
    process(client, "documents", FILES)
    archive = export(client)
    patched = fresh.patch(
        f"{BASE}/rag/databases/main_db",
        json={"embedding_strategies": embedding(normalize=False)},
    )
    assert patched.status_code == 200, patched.text
    foreign = import_(fresh, archive)
    assert foreign.status_code == 409 and "another embedder" in foreign.json()["detail"]
    assert fresh.get(f"{BASE}/rag/stats").json()["chunk_count"] == 0

    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        good = {name.replace(".", "_"): zf.read(name) for name in zf.namelist()}
    manifest = json.loads(good["manifest_json"])
    bad = {
        "not a zip": b"hello",
        "no vectors": archive_of(manifest_json=good["manifest_json"], chunks_jsonl=b""),
        "another format": archive_of(
            **{**good, "manifest_json": json.dumps({**manifest, "version": 9}).encode()}
        ),
        "rows and lines differ": archive_of(
            **{**good, "chunks_jsonl": good["chunks_jsonl"].split(b"\n", 1)[1]}
        ),
        "a line not JSON": archive_of(**{**good, "chunks_jsonl": b"{oops\n"}),
        "pickled vectors": archive_of(**{**good, "vectors_npy": _pickled()}),
    }
    for reason, content in bad.items():
        response = import_(client, content)
        assert response.status_code == 400, (reason, response.text)
        assert response.json()["detail"]
    assert import_(client, b"").status_code == 400
    assert import_(client, archive, database="nope").status_code == 404
    assert client.get(f"{BASE}/rag/databases/nope/export").status_code == 404
    assert client.post(f"{BASE}/rag/databases/nope/compact").status_code == 404


def _pickled() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.usefixtures("project")
def test_compact_gives_back_what_a_reindex_and_deletes_left(
    client: TestClient, settings: Settings
) -> None:
    process(client, "documents", {**FILES, "notes.md": notes()})
    task_id = client.post(f"{BASE}/rag/databases/main_db/reindex").json()["task_id"]
    assert run_reindex(worker(client), task_id) == "SUCCESS"
    cleared = client.post(
        f"{BASE}/datasets/documents/actions", json={"action_type": "delete_dataset_chunks"}
    )
    assert cleared.status_code == 200, cleared.text

    def segments() -> list[str]:
        return [p.name for p in store_folder(settings).iterdir() if p.is_dir() and _uuid(p.name)]

    assert len(segments()) == 2  # Chroma keeps the old collection's folder
    response = client.post(f"{BASE}/rag/databases/main_db/compact")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"] == "main_db"
    assert body["bytes_before"] > body["bytes_after"] > 0
    assert len(segments()) == 1
    # Still a working database.
    process(client, "documents", {"orchard2.txt": b"Pear trees blossom in early spring."})
    answer = client.post(f"{BASE}/rag/query", json={"query": "pear blossom"}).json()
    assert answer["results"][0]["metadata"]["source"] == "orchard2.txt"


def _uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
