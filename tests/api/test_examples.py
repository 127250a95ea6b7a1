"""Examples API in process: catalog, imports into new and existing projects, conflicts, undo."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.api import create_app
from llamafarm.examples import catalog
from llamafarm.settings import Settings
from llamafarm.state import FileRecord, TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.examples.builders import GARDEN, QUESTION, data_size, project_size, write_example


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        examples_dir=tmp_path / "examples",
        allowed_hosts=["testserver"],
    )


@pytest.fixture
def garden(settings: Settings) -> Path:
    assert settings.examples_dir is not None
    return write_example(settings.examples_dir)


def run_pending(client: TestClient) -> list[str]:
    """Process every queued file with the worker's own function, in this process."""
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    with state.db.session() as session:
        ids = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")).all()
    return [run_file(context, file_id) for file_id in ids]


def config_of(client: TestClient, ref: str) -> dict[str, Any]:
    response = client.get(f"/v1/projects/{ref}")
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()["project"]["config"]
    return config


def files_of(client: TestClient, ref: str) -> dict[str, list[str]]:
    """Dataset name -> names of its uploaded files."""
    body = client.get(f"/v1/projects/{ref}/datasets").json()
    return {
        d["name"]: sorted(f["original_filename"] for f in d["details"]["file_details"])
        for d in body["datasets"]
    }


def names(config: dict[str, Any]) -> dict[str, list[str]]:
    rag = config.get("rag") or {}
    return {
        "databases": [d["name"] for d in rag.get("databases", [])],
        "strategies": [s["name"] for s in rag.get("data_processing_strategies", [])],
        "datasets": [d["name"] for d in config.get("datasets", [])],
    }


def query(client: TestClient, ref: str, text: str, **options: Any) -> list[dict[str, Any]]:
    response = client.post(f"/v1/projects/{ref}/rag/query", json={"query": text, **options})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_list_examples(client: TestClient, garden: Path) -> None:
    response = client.get("/v1/examples")
    assert response.status_code == 200
    [example] = response.json()["examples"]
    assert list(example) == [
        "id",
        "slug",
        "title",
        "description",
        "primaryModel",
        "tags",
        "dataset_count",
        "data_size_bytes",
        "data_size_human",
        "project_size_bytes",
        "project_size_human",
        "updated_at",
        "questions",
    ]
    assert example["id"] == example["slug"] == "garden"
    assert example["title"] == "The garden example"
    assert example["primaryModel"] == "SmolLM2-135M-Instruct"
    assert example["tags"] == ["rag", "garden"]
    assert example["dataset_count"] == 2
    assert example["data_size_bytes"] == data_size()
    assert example["data_size_human"] == f"{data_size()}B"
    assert example["project_size_bytes"] == project_size(garden)
    assert example["questions"] == [QUESTION]
    assert example["updated_at"].endswith("Z")


def test_a_malformed_example_is_left_out_of_the_list(
    client: TestClient, settings: Settings, garden: Path
) -> None:
    assert settings.examples_dir is not None
    broken = write_example(settings.examples_dir, "broken")
    (broken / "manifest.yaml").write_text("id: [")
    response = client.get("/v1/examples")
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["examples"]] == ["garden"]
    missing = client.get("/v1/examples/broken/datasets")
    assert missing.status_code == 404
    assert "not usable" in missing.json()["detail"]


def test_example_datasets(client: TestClient, garden: Path) -> None:
    response = client.get("/v1/examples/garden/datasets")
    assert response.status_code == 200
    body = response.json()
    assert body["example_id"] == "garden"
    assert [(d["name"], d["file_count"]) for d in body["datasets"]] == [("herbs", 2), ("tools", 1)]
    tools = body["datasets"][1]
    assert tools == {
        "name": "tools",
        "description": tools["description"],
        "database": tools["database"],
        "data_processing_strategy": tools["data_processing_strategy"],
        "file_count": 1,
        "size_bytes": len(GARDEN["tools"]["files/tools/shears.txt"]),
        "size_human": tools["size_human"],
        "files": tools["files"],
    }
    assert tools["files"] == [
        {"name": "shears.txt", "size_bytes": len(GARDEN["tools"]["files/tools/shears.txt"])}
    ]
    assert tools["size_bytes"] == len(GARDEN["tools"]["files/tools/shears.txt"])


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/v1/examples/nope/datasets", {}, 404),
    ("POST", "/v1/examples/nope/import-project", {"json": {}}, 404),
    ("POST", "/v1/examples/nope/import-data", {"json": {"project": "bot"}}, 404),
    (
        "POST",
        "/v1/examples/nope/import-dataset",
        {"json": {"project": "bot", "dataset": "herbs"}},
        404,
    ),
    ("GET", "/v1/examples/%2e%2e/datasets", {}, 400),
    ("GET", "/v1/examples/.hidden/datasets", {}, 400),
    ("GET", "/v1/examples/a%20b/datasets", {}, 400),
    ("GET", "/v1/examples/" + "x" * 65 + "/datasets", {}, 400),
    ("GET", "/v1/examples/..%2F..%2Fetc/datasets", {}, 404),
    ("POST", "/v1/examples/%2e%2e/import-project", {"json": {}}, 400),
    ("POST", "/v1/examples/garden/import-project", {"json": {"namespace": "../x"}}, 400),
    ("POST", "/v1/examples/garden/import-project", {"json": {"name": "a/b"}}, 400),
    ("POST", "/v1/examples/garden/import-project", {"json": {"name": ".."}}, 400),
    ("POST", "/v1/examples/garden/import-project", {"json": {"name": 5}}, 422),
    ("POST", "/v1/examples/garden/import-project", {"json": {"name": ""}}, 422),
    ("POST", "/v1/examples/garden/import-project", {"json": {"bogus": 1}}, 422),
    ("POST", "/v1/examples/garden/import-project", {"json": ["garden"]}, 422),
    ("POST", "/v1/examples/garden/import-data", {"json": {}}, 422),
    ("POST", "/v1/examples/garden/import-data", {"json": {"project": "missing"}}, 404),
    ("POST", "/v1/examples/garden/import-data", {"json": {"project": "../bot"}}, 400),
    (
        "POST",
        "/v1/examples/garden/import-data",
        {"json": {"project": "bot", "namespace": "acme", "process": "maybe"}},
        422,
    ),
    ("POST", "/v1/examples/garden/import-dataset", {"json": {"project": "bot"}}, 422),
    (
        "POST",
        "/v1/examples/garden/import-dataset",
        {"json": {"project": "bot", "namespace": "acme", "dataset": "nope"}},
        404,
    ),
    (
        "POST",
        "/v1/examples/garden/import-dataset",
        {"json": {"project": "bot", "namespace": "acme", "dataset": "../herbs"}},
        400,
    ),
    (
        "POST",
        "/v1/examples/garden/import-dataset",
        {"json": {"project": "missing", "namespace": "acme", "dataset": "herbs"}},
        404,
    ),
]


@pytest.mark.usefixtures("garden", "project")
@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD_REQUESTS)
def test_bad_requests_answer_4xx_with_detail(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    before = config_of(client, "acme/bot")
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"]
    assert config_of(client, "acme/bot") == before
    assert client.get("/v1/projects/default").json()["total"] == 0


@pytest.mark.usefixtures("garden")
def test_import_project_uploads_processes_and_answers_queries(client: TestClient) -> None:
    response = client.post(
        "/v1/examples/garden/import-project",
        json={"namespace": "acme", "name": "plot", "process": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["project"] == "plot" and body["namespace"] == "acme"
    assert body["datasets"] == ["herbs", "tools"]
    assert len(body["task_ids"]) == 2 and len(set(body["task_ids"])) == 2

    config = config_of(client, "acme/plot")
    assert (config["namespace"], config["name"]) == ("acme", "plot")
    assert names(config) == {
        "databases": ["garden_db"],
        "strategies": ["garden_processor"],
        "datasets": ["herbs", "tools"],
    }
    assert files_of(client, "acme/plot") == {
        "herbs": ["basil.md", "mint.txt"],
        "tools": ["shears.txt"],
    }
    details = client.get("/v1/projects/acme/plot/datasets").json()["datasets"][1]["details"]
    [shears] = details["file_details"]
    assert shears["hash"] == hashlib.sha256(GARDEN["tools"]["files/tools/shears.txt"]).hexdigest()

    assert run_pending(client) == ["SUCCESS"] * 3
    for task_id in body["task_ids"]:
        task = client.get(f"/v1/projects/acme/plot/tasks/{task_id}").json()
        assert task["state"] == "SUCCESS"
    [herbs_task, tools_task] = [
        client.get(f"/v1/projects/acme/plot/tasks/{t}").json() for t in body["task_ids"]
    ]
    assert herbs_task["meta"]["dataset"] == "herbs" and herbs_task["meta"]["total"] == 2
    assert tools_task["meta"]["dataset"] == "tools" and tools_task["meta"]["total"] == 1

    [best, *_] = query(client, "acme/plot", QUESTION, top_k=2)
    assert best["metadata"]["source"] == "basil.md"
    assert "fourteen hours of light" in best["content"]
    [shears_hit] = query(client, "acme/plot", "whetstone", top_k=1)
    assert shears_hit["metadata"]["source"] == "shears.txt"


@pytest.mark.usefixtures("garden")
def test_import_project_defaults_and_no_processing(client: TestClient) -> None:
    response = client.post("/v1/examples/garden/import-project", json={"process": False})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "project": "garden",
        "namespace": "default",
        "datasets": ["herbs", "tools"],
        "task_ids": [],
    }
    assert files_of(client, "default/garden")["tools"] == ["shears.txt"]
    assert run_pending(client) == []


@pytest.mark.usefixtures("garden", "project")
def test_import_project_over_an_existing_project_conflicts(client: TestClient) -> None:
    before = config_of(client, "acme/bot")
    response = client.post(
        "/v1/examples/garden/import-project", json={"namespace": "acme", "name": "bot"}
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "Project acme/bot already exists"}
    assert config_of(client, "acme/bot") == before
    assert files_of(client, "acme/bot") == {"documents": []}


def test_a_failed_import_project_leaves_no_project(client: TestClient, settings: Settings) -> None:
    assert settings.examples_dir is not None
    datasets = {
        "herbs": GARDEN["herbs"],
        "empty": {"files/empty.txt": b""},  # uploads refuse empty files
    }
    write_example(settings.examples_dir, datasets=datasets)
    response = client.post("/v1/examples/garden/import-project", json={"namespace": "acme"})
    assert response.status_code == 400
    assert response.json() == {"detail": "File is empty"}
    assert client.get("/v1/projects/acme/garden").status_code == 404
    assert not (settings.projects_dir / "acme" / "garden").exists()
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(FileRecord)).all() == []
    assert run_pending(client) == []
    # Nothing is left in the way of a second try.
    (settings.examples_dir / "garden" / "files/empty.txt").write_bytes(b"Now with words.")
    again = client.post("/v1/examples/garden/import-project", json={"namespace": "acme"})
    assert again.status_code == 200, again.text


@pytest.mark.usefixtures("garden", "project")
def test_import_data_into_an_existing_project(client: TestClient) -> None:
    before = config_of(client, "acme/bot")
    response = client.post(
        "/v1/examples/garden/import-data", json={"namespace": "acme", "project": "bot"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["project"] == "bot" and body["namespace"] == "acme"
    assert body["datasets"] == ["herbs", "tools"] and len(body["task_ids"]) == 2

    config = config_of(client, "acme/bot")
    assert names(config) == {
        "databases": ["main_db", "garden_db"],
        "strategies": ["default_processor", "garden_processor"],
        "datasets": ["documents", "herbs", "tools"],
    }
    assert config["rag"]["default_database"] == "main_db"
    assert config["rag"]["databases"][0] == before["rag"]["databases"][0]
    assert config["runtime"] == before["runtime"]
    assert files_of(client, "acme/bot") == {
        "documents": [],
        "herbs": ["basil.md", "mint.txt"],
        "tools": ["shears.txt"],
    }

    assert run_pending(client) == ["SUCCESS"] * 3
    [best, *_] = query(client, "acme/bot", QUESTION, database="garden_db", top_k=2)
    assert "fourteen hours of light" in best["content"]
    assert query(client, "acme/bot", QUESTION) == []  # the default database has nothing yet

    # Again: every name is taken now; all are named and nothing changes.
    imported = config_of(client, "acme/bot")
    again = client.post(
        "/v1/examples/garden/import-data", json={"namespace": "acme", "project": "bot"}
    )
    assert again.status_code == 409
    detail = again.json()["detail"]
    for name in ("garden_db", "garden_processor", "herbs", "tools"):
        assert name in detail
    assert config_of(client, "acme/bot") == imported
    assert files_of(client, "acme/bot")["herbs"] == ["basil.md", "mint.txt"]
    assert run_pending(client) == []


@pytest.mark.usefixtures("project")
def test_import_data_names_every_clash_and_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    assert settings.examples_dir is not None
    # Same database and dataset names as the default template, a strategy of its own.
    write_example(
        settings.examples_dir,
        datasets={"documents": GARDEN["herbs"]},
        database="main_db",
        strategy="herb_processor",
    )
    before = config_of(client, "acme/bot")
    response = client.post(
        "/v1/examples/garden/import-data", json={"namespace": "acme", "project": "bot"}
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Project acme/bot already has database(s) ['main_db']; dataset(s) ['documents'] "
        "of example 'garden'; nothing was imported"
    )
    assert config_of(client, "acme/bot") == before
    assert files_of(client, "acme/bot") == {"documents": []}


@pytest.mark.usefixtures("garden")
def test_import_data_without_strategies_needs_them_in_the_project(client: TestClient) -> None:
    assert client.post("/v1/projects/acme", json={"name": "bare"}).status_code == 201
    before = config_of(client, "acme/bare")
    response = client.post(
        "/v1/examples/garden/import-data",
        json={"namespace": "acme", "project": "bare", "include_strategies": False},
    )
    assert response.status_code == 400
    assert "garden_processor" in response.json()["detail"]
    assert config_of(client, "acme/bare") == before

    # With a strategy of that name in the project, the project's own is used.
    strategy = {**before["rag"]["data_processing_strategies"][0], "name": "garden_processor"}
    strategy["description"] = "the project's own"
    changed = {**before, "rag": {**before["rag"]}}
    changed["rag"]["data_processing_strategies"] = [
        *before["rag"]["data_processing_strategies"],
        strategy,
    ]
    assert client.put("/v1/projects/acme/bare", json={"config": changed}).status_code == 200
    response = client.post(
        "/v1/examples/garden/import-data",
        json={
            "namespace": "acme",
            "project": "bare",
            "include_strategies": False,
            "process": False,
        },
    )
    assert response.status_code == 200, response.text
    config = config_of(client, "acme/bare")
    assert names(config)["strategies"] == ["default_processor", "garden_processor"]
    assert config["rag"]["data_processing_strategies"][1]["description"] == "the project's own"
    assert names(config)["databases"] == ["main_db", "garden_db"]


@pytest.mark.usefixtures("garden")
def test_import_data_into_a_project_without_rag(client: TestClient) -> None:
    created = client.post("/v1/projects/acme", json={"name": "chat", "config_template": "server"})
    assert created.status_code == 201
    response = client.post(
        "/v1/examples/garden/import-data",
        json={"namespace": "acme", "project": "chat", "process": False},
    )
    assert response.status_code == 200, response.text
    config = config_of(client, "acme/chat")
    assert config["rag"]["default_database"] == "garden_db"
    assert names(config)["datasets"] == ["herbs", "tools"]


@pytest.mark.usefixtures("garden", "project")
def test_import_dataset_adds_what_it_needs_and_reuses_identical_definitions(
    client: TestClient,
) -> None:
    first = client.post(
        "/v1/examples/garden/import-dataset",
        json={"namespace": "acme", "project": "bot", "dataset": "herbs", "process": False},
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "project": "bot",
        "namespace": "acme",
        "datasets": ["herbs"],
        "task_ids": [],
    }
    config = config_of(client, "acme/bot")
    assert names(config) == {
        "databases": ["main_db", "garden_db"],
        "strategies": ["default_processor", "garden_processor"],
        "datasets": ["documents", "herbs"],
    }
    assert files_of(client, "acme/bot")["herbs"] == ["basil.md", "mint.txt"]

    second = client.post(
        "/v1/examples/garden/import-dataset",
        json={"namespace": "acme", "project": "bot", "dataset": "tools"},
    )
    assert second.status_code == 200, second.text
    [task_id] = second.json()["task_ids"]
    config = config_of(client, "acme/bot")
    assert names(config)["databases"] == ["main_db", "garden_db"]  # reused, not added twice
    assert names(config)["datasets"] == ["documents", "herbs", "tools"]
    task = client.get(f"/v1/projects/acme/bot/tasks/{task_id}").json()
    assert task["meta"]["dataset"] == "tools"
    assert [f["filename"] for f in task["meta"]["files"]] == ["shears.txt"]

    again = client.post(
        "/v1/examples/garden/import-dataset",
        json={"namespace": "acme", "project": "bot", "dataset": "herbs"},
    )
    assert again.status_code == 409
    assert again.json() == {"detail": "Dataset 'herbs' already exists in acme/bot"}


@pytest.mark.usefixtures("garden", "project")
def test_import_dataset_refuses_a_definition_of_the_same_name_with_another_config(
    client: TestClient,
) -> None:
    before = config_of(client, "acme/bot")
    changed = {**before, "rag": {**before["rag"]}}
    database = {**before["rag"]["databases"][0], "name": "garden_db"}
    database["config"] = {"collection_name": "mine", "distance_function": "cosine"}
    changed["rag"]["databases"] = [*before["rag"]["databases"], database]
    assert client.put("/v1/projects/acme/bot", json={"config": changed}).status_code == 200
    before = config_of(client, "acme/bot")

    response = client.post(
        "/v1/examples/garden/import-dataset",
        json={"namespace": "acme", "project": "bot", "dataset": "tools"},
    )
    assert response.status_code == 409
    assert "Database 'garden_db' already exists in acme/bot" in response.json()["detail"]
    assert config_of(client, "acme/bot") == before
    assert "tools" not in files_of(client, "acme/bot")


def test_a_failed_import_dataset_takes_back_what_it_added(
    client: TestClient, settings: Settings, project: dict[str, Any]
) -> None:
    assert settings.examples_dir is not None
    write_example(
        settings.examples_dir,
        datasets={"notes": {"files/a.txt": b"Some words.", "files/b.txt": b""}},
    )
    before = config_of(client, "acme/bot")
    for route, extra in (("import-dataset", {"dataset": "notes"}), ("import-data", {})):
        response = client.post(
            f"/v1/examples/garden/{route}",
            json={"namespace": "acme", "project": "bot", **extra},
        )
        assert response.status_code == 400, response.text
        assert config_of(client, "acme/bot") == before
        assert files_of(client, "acme/bot") == {"documents": []}
        with client.app.state.db.session() as session:  # type: ignore[attr-defined]
            assert session.scalars(select(FileRecord)).all() == []


BUNDLED = sorted(e.id for e in catalog.list_examples(catalog.BUNDLED_DIR))


@pytest.mark.slow
@pytest.mark.parametrize("example_id", BUNDLED)
def test_a_bundled_example_answers_its_questions(tmp_path: Path, example_id: str) -> None:
    """Imported and processed, each question retrieves the passage that holds its answer."""
    settings = Settings(
        data_dir=tmp_path / "data", version_check_url="", allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post(f"/v1/examples/{example_id}/import-project", json={})
        assert response.status_code == 200, response.text
        assert set(run_pending(client)) == {"SUCCESS"}
        example = catalog.get_example(catalog.BUNDLED_DIR, example_id)
        for question in example.manifest.questions:
            results = query(client, f"default/{example_id}", question.question, top_k=5)
            texts = " ".join(
                r["content"]
                for r in results
                if r["metadata"]["source"] == Path(str(question.file)).name
            )
            assert _words(str(question.expect)) in _words(texts), question.question


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
