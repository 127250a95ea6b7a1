"""Blue/green reindex in process: a new collection built beside the serving one from the stored
files, switched to at once when complete; a cancel leaves the old one serving."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm.settings import Settings
from llamafarm.tasks.processing import WorkerContext
from llamafarm.tasks.reindex import run_reindex
from tests.api.test_index_lifecycle import embedding, patch_embedding, process
from tests.api.test_rag import BASE, FILES, search, sources

QUESTION = "Why do glaciers retreat?"


def start(client: TestClient, database: str = "main_db") -> str:
    response = client.post(f"{BASE}/rag/databases/{database}/reindex")
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    assert response.json()["task_uri"].endswith(f"/tasks/{task_id}")
    return task_id


def worker(client: TestClient) -> WorkerContext:
    state = client.app.state  # type: ignore[attr-defined]
    return WorkerContext(db=state.db, projects=state.projects, worker="test")


def task(client: TestClient, task_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def store_folder(settings: Settings, database: str = "main_db") -> Path:
    return Path(settings.projects_dir) / "acme" / "bot" / "stores" / database


def lexical(settings: Settings) -> list[str]:
    """The collections of main_db with a BM25 index (the template names its collection
    `documents`; a reindex's is `documents_g1`, then `_g2`...)."""
    found = store_folder(settings).glob("*.lexical.sqlite3")
    return sorted(path.name.removesuffix(".lexical.sqlite3") for path in found)


def generation(settings: Settings) -> int:
    found: int = json.loads((store_folder(settings) / "index.json").read_text())["generation"]
    return found


@pytest.mark.usefixtures("project")
def test_queries_answer_throughout_a_reindex_then_use_the_new_vectors(
    client: TestClient, settings: Settings
) -> None:
    process(client, "documents", FILES)
    patch_embedding(client, max_length=8)  # other vectors: the old index must keep answering
    assert search(client, QUESTION)["needs_reindex"] is True
    task_id = start(client)

    answers: list[tuple[int, int, bool]] = []
    asked = threading.Condition()
    finished = threading.Event()

    def ask() -> None:
        while True:
            done = finished.is_set()
            response = client.post(f"{BASE}/rag/query", json={"query": QUESTION})
            body = response.json()
            with asked:
                answers.append(
                    (response.status_code, len(body.get("results", [])), body.get("needs_reindex"))
                )
                asked.notify_all()
            if done:
                return

    def after_file(name: str) -> None:
        # Each file stored into the new collection is followed by a query or two.
        with asked:
            seen = len(answers)
            asked.wait_for(lambda: len(answers) >= seen + 2, timeout=60)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        assert run_reindex(worker(client), task_id, after_file=after_file) == "SUCCESS"
    finally:
        with asked:  # and a couple after the switch
            seen = len(answers)
            asked.wait_for(lambda: len(answers) >= seen + 2, timeout=60)
        finished.set()
        asking.join(timeout=60)

    assert len(answers) >= 2 * len(FILES) + 2
    assert all(status == 200 and found > 0 for status, found, _ in answers), answers
    assert answers[0][2] is True and answers[-1][2] is False

    report = task(client, task_id)
    assert report["state"] == "SUCCESS" and report["meta"]["kind"] == "reindex"
    assert report["meta"]["dataset"] == "main_db"
    assert report["meta"]["current"] == report["meta"]["total"] == len(FILES)
    files = report["result"]["details"]
    assert {f["filename"] for f in files} == set(FILES)
    assert all(f["state"] == "SUCCESS" and f["chunks"] > 0 for f in files)
    assert all(f["dataset"] == "documents" and f["chunks_reused"] == 0 for f in files)

    # Switched, the old collection dropped, needs_reindex cleared.
    assert generation(settings) == 1
    assert lexical(settings) == ["documents_g1"]
    assert client.get(f"{BASE}/rag/health").json()["needs_reindex"] is False
    stats = client.get(f"{BASE}/rag/stats").json()
    assert stats["chunk_count"] == sum(f["chunks"] for f in files) and not stats["needs_reindex"]

    # The new vectors answer: exactly as a database ingested afresh with the new embedder.
    spare = client.get(f"{BASE}/rag/databases/main_db").json()
    body = {k: spare[k] for k in ("type", "config", "retrieval_strategies")}
    body |= {"name": "fresh_db", "embedding_strategies": embedding(max_length=8)}
    assert client.post(f"{BASE}/rag/databases", json=body).status_code == 201
    dataset = {
        "name": "fresh",
        "database": "fresh_db",
        "data_processing_strategy": "default_processor",
    }
    assert client.post(f"{BASE}/datasets", json=dataset).status_code == 201
    process(client, "fresh", FILES)
    for question in (QUESTION, "dishwasher error", "when do apple trees blossom"):
        reindexed = search(client, question, retrieval_strategy="basic_search")
        fresh = search(client, question, database="fresh_db", retrieval_strategy="basic_search")
        assert reindexed["needs_reindex"] is False
        assert sources(reindexed) == sources(fresh)
        assert [r["score"] for r in reindexed["results"]] == pytest.approx(
            [r["score"] for r in fresh["results"]], abs=1e-5
        )

    # Processing the same files again finds them stored with these settings.
    # (at once: a file stored with the task's settings gets no job).
    again = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert again.status_code == 202, again.text
    skipped = task(client, again.json()["task_id"])
    assert skipped["state"] == "SUCCESS", skipped
    assert {f["state"] for f in skipped["meta"]["files"]} == {"SKIPPED"}


@pytest.mark.usefixtures("project")
def test_a_cancelled_reindex_leaves_the_old_index_serving(
    client: TestClient, settings: Settings
) -> None:
    process(client, "documents", FILES)
    patch_embedding(client, normalize=False)
    task_id = start(client)
    reached, go = threading.Event(), threading.Event()
    outcome: list[str] = []

    def after_file(name: str) -> None:
        reached.set()
        assert go.wait(timeout=60)

    building = threading.Thread(
        target=lambda: outcome.append(run_reindex(worker(client), task_id, after_file=after_file))
    )
    building.start()
    try:
        assert reached.wait(timeout=120)
        # Half-built beside the serving one.
        assert lexical(settings) == ["documents", "documents_g1"]
        assert task(client, task_id)["state"] == "STARTED"
        assert sources(search(client, QUESTION))[0] == "glaciers.md"
        cancelled = client.delete(f"{BASE}/tasks/{task_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["cancelled"] is True
        assert cancelled.json()["running_tasks_at_cancel"] == 1
    finally:
        go.set()
        building.join(timeout=120)
    assert outcome == ["REVOKED"]

    report = task(client, task_id)
    assert report["state"] == "REVOKED"
    states = [f["state"] for f in report["meta"]["files"]]
    assert states[0] == "SUCCESS" and set(states[1:]) == {"CANCELLED"}
    assert generation(settings) == 0
    assert lexical(settings) == ["documents"]
    answer = search(client, QUESTION)
    assert answer["needs_reindex"] is True and sources(answer)[0] == "glaciers.md"
    assert client.get(f"{BASE}/rag/stats").json()["chunk_count"] == len(FILES)

    # The database may be reindexed again; a reindex cancelled before it starts never runs.
    queued = start(client)
    assert client.delete(f"{BASE}/tasks/{queued}").json()["pending_tasks_cancelled"] == 3
    assert run_reindex(worker(client), queued) == "CLAIMED"
    assert task(client, queued)["state"] == "REVOKED"
    again = client.delete(f"{BASE}/tasks/{queued}").json()
    assert again["already_cancelled"] is True


@pytest.mark.usefixtures("project")
def test_an_unchanged_embedder_reuses_every_vector_and_one_reindex_runs_at_a_time(
    client: TestClient, settings: Settings
) -> None:
    details = process(client, "documents", FILES)
    task_id = start(client)
    again = client.post(f"{BASE}/rag/databases/main_db/reindex")
    assert again.status_code == 409 and task_id in again.json()["detail"]
    refused = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert refused.status_code == 409 and "reindexed" in refused.json()["detail"]

    assert run_reindex(worker(client), task_id) == "SUCCESS"
    files = task(client, task_id)["result"]["details"]
    assert all(f["chunks_reused"] == f["chunks"] > 0 for f in files)
    assert sum(f["chunks"] for f in files) == sum(f["chunks"] for f in details.values())
    assert generation(settings) == 1
    assert sources(search(client, QUESTION))[0] == "glaciers.md"

    # While files of its datasets are processed, a database is not reindexed.
    upload = client.post(
        f"{BASE}/datasets/documents/data", files={"file": ("notes.txt", b"Some more notes.")}
    )
    assert upload.status_code == 200, upload.text
    processing = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert processing.status_code == 202, processing.text
    busy = client.post(f"{BASE}/rag/databases/main_db/reindex")
    assert busy.status_code == 409 and processing.json()["task_id"] in busy.json()["detail"]


@pytest.mark.usefixtures("project")
def test_a_failed_reindex_leaves_the_old_index_serving(
    client: TestClient, settings: Settings
) -> None:
    details = process(client, "documents", FILES)
    task_id = start(client)
    # A stored file's bytes gone: that file cannot be processed again.
    kitchen = next(h for h, f in details.items() if f["filename"] == "kitchen.txt")
    raw = next(Path(settings.projects_dir).rglob(f"raw/{kitchen}"))
    raw.unlink()
    assert run_reindex(worker(client), task_id) == "FAILURE"
    report = task(client, task_id)
    assert report["state"] == "FAILURE" and report["error"]
    failed = [f for f in report["meta"]["files"] if f["state"] == "FAILURE"]
    assert [f["filename"] for f in failed] == ["kitchen.txt"]
    assert generation(settings) == 0
    assert lexical(settings) == ["documents"]
    assert sources(search(client, QUESTION))[0] == "glaciers.md"
    assert client.post(f"{BASE}/rag/databases/main_db/reindex").status_code == 202


@pytest.mark.usefixtures("project")
def test_reindex_bad_input(client: TestClient) -> None:
    for database, status in (("nope", 404), ("a%20b", 400)):
        response = client.post(f"{BASE}/rag/databases/{database}/reindex")
        assert response.status_code == status, response.text
        assert response.json()["detail"]
    response = client.post("/v1/projects/acme/nobody/rag/databases/main_db/reindex")
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.usefixtures("project")
def test_files_removed_or_cleared_during_a_reindex_stay_out_of_the_new_index(
    client: TestClient,
) -> None:
    details = process(client, "documents", FILES)
    by_name = {f["filename"]: f["hash"] for f in details.values()}
    task_id = start(client)

    def after_file(name: str) -> None:
        if name != "glaciers.md":
            return
        action = f"{BASE}/datasets/documents/actions"
        cleared = client.post(
            action, json={"action_type": "delete_file_chunks", "file_hash": by_name["kitchen.txt"]}
        )
        assert cleared.status_code == 200, cleared.text
        removed = client.delete(f"{BASE}/datasets/documents/data/{by_name['orchard.txt']}")
        assert removed.status_code == 200, removed.text

    assert run_reindex(worker(client), task_id, after_file=after_file) == "SUCCESS"
    stats = client.get(f"{BASE}/rag/stats").json()
    assert (stats["document_count"], stats["chunk_count"]) == (
        1,
        details[by_name["glaciers.md"]]["chunks"],
    )
    assert sources(search(client, "dishwasher error E4417")) == ["glaciers.md"]
    listed = client.get(f"{BASE}/rag/databases/main_db/documents").json()
    assert [d["filename"] for d in listed] == ["glaciers.md"]
