"""Index lifecycle in process: the fingerprint of what built a database, `needs_reindex`, and
the refusal to mix two embedders' vectors in one collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.rag.embedders.reuse import CACHE_FILE
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.test_rag import BASE, FILES, ingest, search, sources


def embedding(**config: Any) -> list[dict[str, Any]]:
    """main_db's embedding strategy (the bundled MiniLM) with `config` on top."""
    base = {"model": "all-MiniLM-L6-v2", "dimension": 384, "batch_size": 32}
    return [{"name": "default_embeddings", "type": "UniversalEmbedder", "config": base | config}]


def patch_embedding(client: TestClient, **config: Any) -> None:
    response = client.patch(
        f"{BASE}/rag/databases/main_db", json={"embedding_strategies": embedding(**config)}
    )
    assert response.status_code == 200, response.text


def health(client: TestClient) -> dict[str, Any]:
    response = client.get(f"{BASE}/rag/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pending(client: TestClient) -> list[int]:
    state = client.app.state  # type: ignore[attr-defined]
    with state.db.session() as session:
        return list(session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")))


@pytest.mark.usefixtures("project")
def test_a_changed_embedder_marks_the_database_and_refuses_mixed_ingestion(
    client: TestClient,
) -> None:
    ingest(client, {"glaciers.md": FILES["glaciers.md"]})
    answer = search(client, "Why do glaciers retreat?")
    assert answer["needs_reindex"] is False and sources(answer) == ["glaciers.md"]
    report = health(client)
    assert report["needs_reindex"] is False and report["components"]["index"]["status"] == "healthy"

    # How the vectors are fetched is no change of index; how they are made is.
    patch_embedding(client, batch_size=8, threads=1)
    assert health(client)["needs_reindex"] is False
    # A file queued before the change, processed after it.
    upload = client.post(
        f"{BASE}/datasets/documents/data", files={"file": ("kitchen.txt", FILES["kitchen.txt"])}
    )
    assert upload.status_code == 200, upload.text
    queued = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert queued.status_code == 202, queued.text
    patch_embedding(client, normalize=False)

    report = health(client)
    assert report["needs_reindex"] is True and report["status"] == "degraded"
    assert report["components"]["index"]["status"] == "degraded"
    assert any("lf rag clear documents" in issue for issue in report["issues"])
    # The old index keeps answering, embedded with the model that built it, and says so.
    answer = search(client, "Why do glaciers retreat?")
    assert answer["needs_reindex"] is True and sources(answer) == ["glaciers.md"]

    refused = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert refused.status_code == 409
    assert "lf rag clear documents" in refused.json()["detail"]
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    # kitchen.txt's (glaciers.md, stored with the settings of then, was skipped when queued)
    queued_files = pending(client)
    assert len(queued_files) == 1
    for queued_file in queued_files:
        assert run_file(context, queued_file) == "FAILURE"
        with state.db.session() as session:
            failed = session.get_one(TaskFile, queued_file)
            assert failed.error_type == "NeedsReindex" and "reindex" in (failed.error or "")
    assert sources(search(client, "Why do glaciers retreat?")) == ["glaciers.md"]
    assert "kitchen.txt" not in sources(search(client, "dishwasher error E4417"))

    # As the 409 says: its chunks cleared, the next file records the new embedder.
    cleared = client.post(
        f"{BASE}/datasets/documents/actions", json={"action_type": "delete_dataset_chunks"}
    )
    assert cleared.status_code == 200, cleared.text
    assert health(client)["needs_reindex"] is False
    ingest(client, {"orchard.txt": FILES["orchard.txt"]})
    answer = search(client, "When do apple trees blossom?")
    assert answer["needs_reindex"] is False and sources(answer)[0] == "orchard.txt"
    assert sources(search(client, "Why do glaciers retreat?"))[0] == "glaciers.md"


@pytest.mark.usefixtures("project")
def test_processing_an_unknown_dataset_is_a_404(client: TestClient) -> None:
    response = client.post(f"{BASE}/datasets/nope/actions", json={"action_type": "process"})
    assert response.status_code == 404
    assert client.get(f"{BASE}/rag/health", params={"database": "nope"}).status_code == 404


def notes(edited: int | None = None) -> bytes:
    """Markdown of ten sections (one chunk each); section `edited` changed."""
    sections = [
        f"## Topic {i}\n\nThe notes of topic {i}: the team measured {i * 7} samples on day {i}."
        + (" Then it measured them again." if i == edited else "")
        for i in range(10)
    ]
    return "\n\n".join(sections).encode()


def process(client: TestClient, dataset: str, files: dict[str, bytes]) -> dict[str, Any]:
    """Upload, process in this process; the task's per-file details by file hash."""
    for name, content in files.items():
        response = client.post(f"{BASE}/datasets/{dataset}/data", files={"file": (name, content)})
        assert response.status_code == 200, response.text
    task = client.post(f"{BASE}/datasets/{dataset}/actions", json={"action_type": "process"})
    assert task.status_code == 202, task.text
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    for file_id in pending(client):
        run_file(context, file_id)
    report = client.get(f"{BASE}/tasks/{task.json()['task_id']}").json()
    assert report["state"] == "SUCCESS", report
    return {f["hash"]: f for f in report["result"]["details"]}


@pytest.mark.usefixtures("project")
def test_an_edited_file_embeds_only_its_changed_chunks(client: TestClient, settings: Any) -> None:
    first = process(client, "documents", {"notes.md": notes()})
    (stored,) = first.values()
    assert (stored["chunks"], stored["chunks_reused"]) == (10, 0)

    second = process(client, "documents", {"notes.md": notes(edited=3)})
    edited = [f for h, f in second.items() if h not in first]
    assert [(f["state"], f["chunks"], f["chunks_reused"]) for f in edited] == [("SUCCESS", 10, 9)]
    assert second[stored["hash"]]["state"] == "SKIPPED"
    assert sources(search(client, "measured them again"))[0] == "notes.md"

    # The same document in another dataset of the database reuses every vector.
    dataset = {
        "name": "copies",
        "database": "main_db",
        "data_processing_strategy": "default_processor",
    }
    assert client.post(f"{BASE}/datasets", json=dataset).status_code == 201
    (copy,) = process(client, "copies", {"copy.md": notes(edited=3)}).values()
    assert (copy["chunks"], copy["chunks_reused"]) == (10, 10)

    # The cache goes with its database.
    spare = client.get(f"{BASE}/rag/databases/main_db").json()
    body = {k: spare[k] for k in ("type", "config", "embedding_strategies", "retrieval_strategies")}
    assert client.post(f"{BASE}/rag/databases", json=body | {"name": "spare_db"}).status_code == 201
    spare_set = dataset | {"name": "spare", "database": "spare_db"}
    assert client.post(f"{BASE}/datasets", json=spare_set).status_code == 201
    process(client, "spare", {"notes.md": notes()})
    cache = Path(settings.projects_dir) / "acme" / "bot" / "stores" / "spare_db" / CACHE_FILE
    assert cache.is_file()
    assert client.delete(f"{BASE}/datasets/spare").status_code == 200
    assert client.delete(f"{BASE}/rag/databases/spare_db").status_code == 200
    assert not cache.exists()


@pytest.mark.usefixtures("project")
def test_stats_documents_and_clearing_chunks(client: TestClient) -> None:
    details = process(client, "documents", FILES)
    by_name = {f["filename"]: f for f in details.values()}
    stats = client.get(f"{BASE}/rag/stats").json()
    total = sum(f["chunks"] for f in details.values())
    assert stats["database"] == "main_db" and stats["datasets"] == ["documents"]
    assert stats["chunk_count"] == stats["vector_count"] == total
    assert stats["document_count"] == 3
    assert stats["collection_size_bytes"] > stats["index_size_bytes"] > 0
    assert stats["embedder"]["model"] == "all-MiniLM-L6-v2"
    assert stats["embedding_dimension"] == 384 and stats["distance_metric"] == "cosine"
    assert stats["fingerprint"] == stats["index_fingerprint"] and not stats["needs_reindex"]
    assert stats["last_updated"].endswith("Z")
    assert stats["embedding_cache"]["entries"] == total
    assert stats["embedding_cache"]["max_bytes"] == 256 << 20

    first = client.get(f"{BASE}/rag/databases/main_db/documents", params={"limit": 2}).json()
    rest = client.get(f"{BASE}/rag/databases/main_db/documents", params={"offset": 2}).json()
    assert [d["filename"] for d in first + rest] == sorted(FILES)
    assert sum(d["chunk_count"] for d in first + rest) == total
    glaciers = first[0]
    assert glaciers["id"] == by_name["glaciers.md"]["hash"]
    assert glaciers["parser_used"] == "MarkdownParser"
    assert glaciers["metadata"] == {"dataset": "documents", "file_hash": glaciers["id"]}

    kitchen = by_name["kitchen.txt"]
    action = f"{BASE}/datasets/documents/actions"
    cleared = client.post(
        action, json={"action_type": "delete_file_chunks", "file_hash": kitchen["hash"]}
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {
        "message": "Chunks deleted successfully",
        "file_hash": kitchen["hash"],
        "deleted_chunks": kitchen["chunks"],
    }
    assert "kitchen.txt" not in sources(search(client, "dishwasher error E4417"))
    assert client.get(f"{BASE}/rag/stats").json()["document_count"] == 2
    # The file stayed: processing it again reuses its cached vectors.
    again = process(client, "documents", {})
    assert again[kitchen["hash"]]["state"] == "SUCCESS"
    assert again[kitchen["hash"]]["chunks_reused"] == kitchen["chunks"]

    everything = client.post(action, json={"action_type": "delete_dataset_chunks"})
    assert everything.status_code == 200, everything.text
    assert everything.json() == {
        "message": "All chunks deleted successfully",
        "total_deleted_chunks": total,
        "total_files_cleared": 3,
        "total_files_failed": 0,
    }
    stats = client.get(f"{BASE}/rag/stats").json()
    assert (stats["chunk_count"], stats["document_count"]) == (0, 0)
    assert client.get(f"{BASE}/rag/databases/main_db/documents").json() == []


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/rag/stats?database=nope", None, 404),
        ("get", "/rag/databases/nope/documents", None, 404),
        ("get", "/rag/databases/main_db/documents?limit=0", None, 422),
        ("get", "/rag/databases/main_db/documents?offset=-1", None, 422),
        ("post", "/datasets/documents/actions", {"action_type": "delete_file_chunks"}, 400),
        (
            "post",
            "/datasets/documents/actions",
            {"action_type": "delete_file_chunks", "file_hash": "0" * 64},
            404,
        ),
        (
            "post",
            "/datasets/documents/actions",
            {"action_type": "delete_file_chunks", "file_hash": "../x"},
            400,
        ),
        ("post", "/datasets/nope/actions", {"action_type": "delete_dataset_chunks"}, 404),
        ("post", "/datasets/documents/actions", {"action_type": "shred"}, 422),
    ],
)
def test_maintenance_bad_input(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    response = client.request(method, f"{BASE}{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


@pytest.mark.usefixtures("project")
def test_preview_parses_and_chunks_without_storing(client: TestClient) -> None:
    answer = client.post(
        f"{BASE}/rag/preview", files={"file": ("notes.md", notes())}, data={"chunk_size": "200"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["parser_used"] == "MarkdownParser"
    assert body["data_processing_strategy"] == "default_processor"
    assert (body["chunk_size"], body["chunk_strategy"]) == (200, "sections")
    assert body["total_chunks"] == len(body["chunks"]) == 10
    first = body["chunks"][0]
    assert first["chunk_index"] == 0 and "topic 0" in first["content"]
    assert first["char_count"] == len(first["content"]) and first["word_count"] > 5
    assert first["metadata"]["heading"] == "Topic 0"
    # Nothing was stored.
    assert client.get(f"{BASE}/rag/stats").json()["chunk_count"] == 0
    text = client.post(
        f"{BASE}/rag/preview",
        files={"file": ("notes.txt", FILES["orchard.txt"])},
        data={"data_processing_strategy": "default_processor"},
    ).json()
    assert (text["parser_used"], text["total_chunks"]) == ("TextParser", 1)

    for data, status in (
        ({"data_processing_strategy": "nope"}, 404),
        ({"dataset": "nope"}, 404),
        ({"chunk_size": "5"}, 422),
        ({"chunk_strategy": "zigzag"}, 422),
    ):
        refused = client.post(
            f"{BASE}/rag/preview", files={"file": ("notes.md", notes())}, data=data
        )
        assert refused.status_code == status, (data, refused.text)
        assert refused.json()["detail"]
    empty = client.post(f"{BASE}/rag/preview", files={"file": ("empty.md", b"")})
    assert empty.status_code == 400
