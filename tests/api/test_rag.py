"""RAG API in process: databases CRUD, queries over really ingested files, health, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.api.app import create_app
from llamafarm.projects import ProjectRef
from llamafarm.settings import Settings
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, revert_file, run_file

BASE = "/v1/projects/acme/bot"
FILES = {
    "glaciers.md": b"# Glaciers\n\nAlpine glaciers retreat every summer as the ice melts.",
    "kitchen.txt": b"The dishwasher shows error E4417 when its drain hose is blocked.",
    "orchard.txt": b"Apple trees blossom in spring and bear fruit in autumn.",
}


def ingest(
    client: TestClient, files: dict[str, bytes], dataset: str = "documents"
) -> dict[str, str]:
    """Upload and process files with the worker's own function, in this process."""
    hashes = {}
    for name, content in files.items():
        response = client.post(f"{BASE}/datasets/{dataset}/data", files={"file": (name, content)})
        assert response.status_code == 200, response.text
        hashes[name] = response.json()["hash"]
    task = client.post(f"{BASE}/datasets/{dataset}/actions", json={"action_type": "process"})
    assert task.status_code == 202, task.text
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    with state.db.session() as session:
        ids = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")).all()
    for file_id in ids:
        assert run_file(context, file_id) == "SUCCESS"
    return hashes


def search(client: TestClient, query: str, **options: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/rag/query", json={"query": query, **options})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sources(body: dict[str, Any]) -> list[str]:
    return [r["metadata"]["source"] for r in body["results"]]


@pytest.mark.usefixtures("project")
def test_query_finds_an_ingested_passage(client: TestClient) -> None:
    hashes = ingest(client, FILES)
    body = search(client, "Why do glaciers in the Alps get smaller?", top_k=2)
    assert body["query"] == "Why do glaciers in the Alps get smaller?"
    assert body["database_used"] == "main_db"
    assert body["retrieval_strategy_used"] == "hybrid_search"
    assert body["total_results"] == len(body["results"]) == 2
    first = body["results"][0]
    assert first["metadata"]["source"] == "glaciers.md"
    assert first["document_id"] == hashes["glaciers.md"] == first["metadata"]["document_id"]
    assert "glaciers retreat" in first["content"]
    assert len(first["chunk_id"]) == 40
    assert 0 < body["results"][1]["score"] <= first["score"] <= 1
    assert body["processing_time_ms"] > 0

    code = search(client, "E4417", retrieval_strategy="hybrid", hybrid_alpha=0.0)
    assert sources(code) == ["kitchen.txt"]

    only = search(client, "glaciers", metadata_filters={"source": "orchard.txt"})
    assert sources(only) == ["orchard.txt"]
    assert search(client, "glaciers", score_threshold=0.99)["results"] == []

    short = search(client, "glaciers", top_k=3, max_tokens=5)
    assert len(short["results"]) == 1 and len(short["results"][0]["content"]) == 20

    expanded = search(client, "what makes the alpine glaciers retreat", query_expansion=True)
    assert sources(expanded)[0] == "glaciers.md"


@pytest.mark.usefixtures("project")
def test_removed_and_reverted_files_are_never_returned(client: TestClient) -> None:
    hashes = ingest(client, FILES)
    assert sources(search(client, "E4417", retrieval_strategy="hybrid", hybrid_alpha=0.0)) == [
        "kitchen.txt"
    ]
    removed = client.delete(f"{BASE}/datasets/documents/data/{hashes['kitchen.txt']}")
    assert removed.status_code == 200, removed.text
    for strategy in ("basic", "hybrid"):
        assert "kitchen.txt" not in sources(search(client, "E4417", retrieval_strategy=strategy))
    assert search(client, "E4417", retrieval_strategy="hybrid", hybrid_alpha=0.0)["results"] == []

    state = client.app.state  # type: ignore[attr-defined]
    revert_file(
        state.projects,
        state.db,
        ProjectRef("acme", "bot"),
        "documents",
        hashes["orchard.txt"],
        0,
        chroma=state.models.chroma,
    )
    for strategy in ("basic", "hybrid"):
        assert "orchard.txt" not in sources(
            search(client, "apple blossom", retrieval_strategy=strategy)
        )


@pytest.mark.usefixtures("project")
def test_database_crud(client: TestClient) -> None:
    listing = client.get(f"{BASE}/rag/databases").json()
    assert listing["default_database"] == "main_db"
    [main] = listing["databases"]
    assert main["name"] == "main_db" and main["type"] == "ChromaStore" and main["is_default"]
    assert main["embedding_strategies"] == [
        {
            "name": "default_embeddings",
            "type": "UniversalEmbedder",
            "priority": 0,
            "is_default": True,
        }
    ]
    assert {s["name"] for s in main["retrieval_strategies"] if s["is_default"]} == {"hybrid_search"}

    new = {
        "name": "notes_db",
        "type": "ChromaStore",
        "config": {"collection_name": "notes", "distance_function": "cosine"},
        "embedding_strategies": [
            {
                "name": "embeddings",
                "type": "UniversalEmbedder",
                "config": {"model": "all-MiniLM-L6-v2"},
            }
        ],
        "retrieval_strategies": [
            {
                "name": "basic",
                "type": "BasicSimilarityStrategy",
                "config": {"top_k": 10},
                "default": True,
            }
        ],
    }
    created = client.post(f"{BASE}/rag/databases", json=new)
    assert created.status_code == 201, created.text
    assert created.json()["database"]["name"] == "notes_db"
    assert created.json()["database"]["is_default"] is False
    assert client.post(f"{BASE}/rag/databases", json=new).status_code == 409

    details = client.get(f"{BASE}/rag/databases/notes_db").json()
    assert details["config"] == new["config"]
    assert details["default_embedding_strategy"] == "embeddings"
    assert details["default_retrieval_strategy"] == "basic"
    assert details["dependent_datasets"] == []
    assert details["retrieval_strategies"][0]["default"] is True

    patched = client.patch(
        f"{BASE}/rag/databases/notes_db",
        json={
            "retrieval_strategies": [
                {"name": "basic", "type": "BasicSimilarityStrategy"},
                {
                    "name": "hybrid_search",
                    "type": "HybridUniversalStrategy",
                    "config": {"alpha": 0.3},
                },
            ],
            "default_retrieval_strategy": "hybrid_search",
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["default_retrieval_strategy"] == "hybrid_search"
    assert (
        client.get(f"{BASE}").json()["project"]["config"]["rag"]["databases"][1][
            "default_retrieval_strategy"
        ]
        == "hybrid_search"
    )

    for change, status in (({"name": "other"}, 400), ({"type": "Other"}, 400), ({"bogus": 1}, 422)):
        response = client.patch(f"{BASE}/rag/databases/notes_db", json=change)
        assert response.status_code == status, response.text
    assert (
        client.patch(f"{BASE}/rag/databases/notes_db", json={"name": "notes_db"}).status_code == 200
    )

    dataset = {
        "name": "notes",
        "database": "notes_db",
        "data_processing_strategy": "default_processor",
    }
    assert client.post(f"{BASE}/datasets", json=dataset).status_code == 201
    refused = client.delete(f"{BASE}/rag/databases/notes_db")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "Cannot delete database 'notes_db': 1 dataset(s) depend on it. "
        "Delete or reassign these datasets first: ['notes']"
    )
    assert client.get(f"{BASE}/rag/databases/notes_db").json()["dependent_datasets"] == ["notes"]
    ingest(client, {"note.txt": b"Remember the milk."}, dataset="notes")
    # The store config merges key by key, and cannot change under stored chunks.
    moved = client.patch(
        f"{BASE}/rag/databases/notes_db", json={"config": {"distance_function": "l2"}}
    )
    assert moved.status_code == 409 and "holds 1 chunks" in moved.json()["detail"]
    same = client.patch(
        f"{BASE}/rag/databases/notes_db", json={"config": {"distance_function": "cosine"}}
    )
    assert same.status_code == 200 and same.json()["config"] == new["config"]
    store = Path(client.app.state.settings.projects_dir) / "acme/bot/stores/notes_db"  # type: ignore[attr-defined]
    assert store.is_dir()

    assert client.delete(f"{BASE}/datasets/notes").status_code == 200
    deleted = client.delete(f"{BASE}/rag/databases/notes_db", params={"delete_collection": "false"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["message"] == "Database 'notes_db' deleted successfully"
    assert deleted.json()["collection_deleted"] is False
    assert deleted.json()["database"]["name"] == "notes_db"
    assert store.is_dir()
    assert client.get(f"{BASE}/rag/databases/notes_db").status_code == 404
    assert (
        client.post(f"{BASE}/rag/query", json={"query": "x", "database": "notes_db"}).status_code
        == 404
    )

    assert client.post(f"{BASE}/rag/databases", json=new).status_code == 201
    dropped = client.delete(f"{BASE}/rag/databases/notes_db")
    assert dropped.json()["collection_deleted"] is True
    assert not (store / "chroma.sqlite3").exists()
    assert not (store / "notes.lexical.sqlite3").exists()


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"name": "x", "type": "Nope", "embedding_strategies": []}, 400, "Unknown database type"),
        (
            {
                "name": "xdb",
                "type": "ChromaStore",
                "embedding_strategies": [{"name": "e", "type": "Nope"}],
            },
            400,
            "Unknown embedding strategy type",
        ),
        ({"name": "xdb", "type": "ChromaStore"}, 400, "has no embedding_strategies"),
        ({"name": "../x", "type": "ChromaStore"}, 400, "database name"),
        (
            {
                "name": "xdb",
                "type": "ChromaStore",
                "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
                "retrieval_strategies": [{"name": "r", "type": "Nope"}],
            },
            400,
            "Unknown retrieval strategy type",
        ),
        (
            {
                "name": "xdb",
                "type": "ChromaStore",
                "config": {"distance_function": "manhattan"},
                "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
            },
            422,
            "distance_function",
        ),
    ],
)
def test_database_create_rejects_bad_definitions(
    client: TestClient, body: dict[str, Any], status: int, detail: str
) -> None:
    response = client.post(f"{BASE}/rag/databases", json=body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"query": ""}, 422, "query"),
        ({"query": "   "}, 422, "query"),
        ({}, 422, "query"),
        ({"query": "x", "top_k": 0}, 422, "top_k"),
        ({"query": "x", "top_k": -3}, 422, "top_k"),
        ({"query": "x", "top_k": 1_000_000}, 422, "top_k"),
        ({"query": "x", "score_threshold": 2}, 422, "score_threshold"),
        ({"query": "x", "hybrid_alpha": -0.1}, 422, "hybrid_alpha"),
        ({"query": "x", "distance_metric": "manhattan"}, 422, "distance_metric"),
        (
            {"query": "x", "retrieval_strategy": "nope"},
            400,
            "hybrid_search, basic_search, basic, hybrid",
        ),
        ({"query": "x", "database": "nope"}, 404, "nope"),
        ({"query": "x", "database": "../etc"}, 400, "database name"),
        ({"query": "x", "metadata_filters": {"page": {"$regex": "a"}}}, 400, "$regex"),
        ({"query": "x", "metadata_filters": {"page": {"$in": []}}}, 400, "$in"),
        # The client's choice of model, so a 404 (found by tests/api/test_fuzz.py as a 503).
        ({"query": "x", "rerank_model": "acme/missing"}, 404, "acme/missing"),
        (
            {"query": "x", "rerank_model": "acme/missing", "query_expansion": True},
            404,
            "not installed",
        ),
        ({"query": "x", "topk": 3}, 422, "topk"),
        ({"query": "x", "retrieval_strategy": ""}, 422, "retrieval_strategy"),
        ({"query": "x", "metadata_filters": {"source": "\ud83d"}}, 400, "Unicode"),
        ({"query": "x", "metadata_filters": {"#document": "x"}}, 400, "not a metadata key"),
    ],
)
def test_bad_queries_get_clear_errors(
    client: TestClient, body: dict[str, Any], status: int, detail: str
) -> None:
    # json.dumps escapes what cannot be UTF-8, as a client in another language might send it.
    raw = json.dumps(body)
    response = client.post(
        f"{BASE}/rag/query", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


@pytest.mark.usefixtures("project")
def test_health_reports_each_component(client: TestClient) -> None:
    report = client.get(f"{BASE}/rag/health").json()
    assert report["status"] == "healthy", report
    assert report["database"] == "main_db"
    assert set(report["components"]) == {"vector_store", "embeddings", "index"}
    assert report["needs_reindex"] is False
    for name, component in report["components"].items():
        assert component["name"] == name and component["status"] == "healthy"
        assert component["latency"] >= 0 and component["message"]
    assert report["issues"] is None
    assert report["last_check"].endswith("Z")
    assert client.get(f"{BASE}/rag/health", params={"database": "nope"}).status_code == 404


@pytest.mark.usefixtures("project")
def test_health_names_an_unreachable_embedder(client: TestClient) -> None:
    unreachable = {
        "name": "remote_db",
        "type": "ChromaStore",
        "embedding_strategies": [
            {
                "name": "e",
                "type": "OllamaEmbedder",
                "config": {"model": "nomic-embed-text", "base_url": "http://127.0.0.1:9"},
            }
        ],
    }
    assert client.post(f"{BASE}/rag/databases", json=unreachable).status_code == 201
    report = client.get(f"{BASE}/rag/health", params={"database": "remote_db"}).json()
    assert report["status"] == "unhealthy"
    assert report["components"]["vector_store"]["status"] == "healthy"
    embeddings = report["components"]["embeddings"]
    assert embeddings["status"] == "unhealthy"
    assert "127.0.0.1:9" in embeddings["message"]
    assert report["issues"] == [f"embeddings: {embeddings['message']}"]
    query = client.post(f"{BASE}/rag/query", json={"query": "x", "database": "remote_db"})
    assert query.status_code == 503 and "127.0.0.1:9" in query.json()["detail"]


def test_the_apps_lifespan_closes_its_store_clients(settings: Settings) -> None:
    """The routes open the stores through the app's `ChromaClients`, closed with the app."""
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        assert client.get(f"{BASE}/rag/health").status_code == 200
        chroma = app.state.models.chroma
        systems = SharedSystemClient._identifier_to_system
        folders = [Path(f) for f in systems if f.startswith(str(settings.projects_dir))]
        assert folders and all(folder in chroma for folder in folders)
    assert not any(folder in chroma for folder in folders)
    assert not any(str(folder) in systems for folder in folders), "their systems stopped"
