"""Every route documents its success answer with a typed schema, and a real answer of each
route, from the populated project of the fuzz test, matches that schema."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.api import create_app
from llamafarm.settings import Settings
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.populated import BASE, populate
from tests.chat.openai_server import OpenAIServer
from tests.models.hub import FakeHub

UNTYPED: set[str] = {"database_export"}
"""Routes whose success answer has no typed schema: a database's archive (a zip file)."""


def _spec() -> dict[str, Any]:
    return create_app(Settings(version_check_url="")).openapi()


def _successes(operation: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The success statuses an operation documents (one, but for the dataset actions: 202 for a
    task, 200 for chunks deleted at once), with the schema of each of its media types."""
    return {
        status: {
            media: (content or {}).get("schema") or {}
            for media, content in response["content"].items()
        }
        for status, response in operation["responses"].items()
        if status < "300"
    }


def _typed(schema: dict[str, Any], spec: dict[str, Any]) -> bool:
    """An object schema with properties, a list of such (LlamaFarm's document listing) or a
    choice of such."""
    resolved = _resolve(schema, spec)
    if resolved.get("type") == "array":
        return _typed(resolved.get("items") or {}, spec)
    if "anyOf" in resolved:
        return all(_typed(part, spec) for part in resolved["anyOf"])
    return bool(resolved.get("properties"))


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return _resolve(spec["components"]["schemas"][ref.rsplit("/", 1)[1]], spec) if ref else schema


def _operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for methods in spec["paths"].values() for op in methods.values()}


def test_every_success_answer_has_a_schema_with_properties() -> None:
    spec = _spec()
    untyped = set()
    for operation_id, operation in _operations(spec).items():
        successes = _successes(operation)
        assert len(successes) == 1 or operation_id == "dataset_actions", operation_id
        for schemas in successes.values():
            for schema in schemas.values():
                if not _typed(schema, spec):
                    untyped.add(operation_id)
    assert untyped == UNTYPED


Call = Callable[[TestClient, dict[str, str], dict[str, Any]], httpx.Response]


def _calls(hf_cache: Path) -> list[tuple[str, Call]]:
    """One real request per operation, in an order where each finds what it needs (deletions
    last); the lambdas get the client, the populated names and the project's config."""
    b = BASE

    def cached_model(c: TestClient, n: dict[str, str], cfg: dict[str, Any]) -> httpx.Response:
        # An interrupted download: a model folder with a blob and no revision.
        (hf_cache / "models--acme--tiny" / "blobs").mkdir(parents=True)
        (hf_cache / "models--acme--tiny" / "blobs" / "abc.incomplete").write_bytes(b"x" * 10)
        return c.delete("/v1/models/acme/tiny")

    def on_hub(request: Callable[[TestClient], httpx.Response]) -> Call:
        """The request, with a loopback Hub serving one GGUF repo (`HF_ENDPOINT`)."""

        def call(c: TestClient, n: dict[str, str], cfg: dict[str, Any]) -> httpx.Response:
            repo = {"x-Q4_K_M.gguf": b"GGUF" + b"x" * 10}
            with (
                FakeHub({"acme/x-GGUF": repo}) as hub,
                mock.patch.dict(os.environ, {"HF_ENDPOINT": hub.url}),
            ):
                return request(c)

        return call

    def queued(c: TestClient) -> str:
        task = c.post(f"{b}/datasets/more/actions", json={"action_type": "process"})
        return str(task.json()["task_id"])

    def import_dataset(c: TestClient, n: dict[str, str], cfg: dict[str, Any]) -> httpx.Response:
        listed = c.get(f"/v1/examples/{n['example_id']}/datasets").json()
        body = {
            "namespace": "acme",
            "project": "other",
            "dataset": listed["datasets"][0]["name"],
            "process": False,
        }
        return c.post(f"/v1/examples/{n['example_id']}/import-dataset", json=body)

    return [
        ("root", lambda c, n, cfg: c.get("/")),
        ("info", lambda c, n, cfg: c.get("/info")),
        ("health", lambda c, n, cfg: c.get("/health")),
        ("liveness", lambda c, n, cfg: c.get("/health/liveness")),
        ("version_check", lambda c, n, cfg: c.get("/v1/system/version-check")),
        ("namespaces_list", lambda c, n, cfg: c.get("/v1/projects")),
        ("projects_list", lambda c, n, cfg: c.get("/v1/projects/acme")),
        ("project_create", lambda c, n, cfg: c.post("/v1/projects/acme", json={"name": "other"})),
        ("project_get", lambda c, n, cfg: c.get(b)),
        ("project_update", lambda c, n, cfg: c.put(b, json={"config": cfg})),
        (
            "project_config_validate",
            lambda c, n, cfg: c.post(f"{b}/config/validate", json={"config": cfg}),
        ),
        ("project_config_previous", lambda c, n, cfg: c.get(f"{b}/config/previous")),
        ("models_list", lambda c, n, cfg: c.get(f"{b}/models")),
        (
            "chat_history",
            lambda c, n, cfg: c.get(f"{b}/chat/sessions/{n['session_id']}/history"),
        ),
        ("chat_sessions_list", lambda c, n, cfg: c.get(f"{b}/chat/sessions")),
        ("dataset_list", lambda c, n, cfg: c.get(f"{b}/datasets")),
        ("dataset_list", lambda c, n, cfg: c.get(f"{b}/datasets?include_extra_details=false")),
        ("dataset_strategies_list", lambda c, n, cfg: c.get(f"{b}/datasets/strategies")),
        (
            "dataset_create",
            lambda c, n, cfg: c.post(
                f"{b}/datasets",
                json={
                    "name": "more",
                    "data_processing_strategy": "default_processor",
                    "database": "main_db",
                },
            ),
        ),
        (
            "dataset_data_upload",
            lambda c, n, cfg: c.post(
                f"{b}/datasets/more/data?auto_process=true",
                files={"file": ("ice.md", b"# Ice\n\nSea ice forms in winter.")},
            ),
        ),
        (
            "dataset_data_upload",  # the same content again: skipped, no task
            lambda c, n, cfg: c.post(
                f"{b}/datasets/more/data",
                files={"file": ("ice.md", b"# Ice\n\nSea ice forms in winter.")},
            ),
        ),
        (
            "dataset_actions",
            lambda c, n, cfg: c.post(f"{b}/datasets/more/actions", json={"action_type": "process"}),
        ),
        ("rag_stats", lambda c, n, cfg: c.get(f"{b}/rag/stats")),
        (
            "rag_preview",
            lambda c, n, cfg: c.post(
                f"{b}/rag/preview", files={"file": ("a.md", b"# A\n\nSome text of A.")}
            ),
        ),
        (
            "rag_list_documents",
            lambda c, n, cfg: c.get(f"{b}/rag/databases/main_db/documents?limit=5"),
        ),
        (
            "database_import",
            lambda c, n, cfg: c.post(
                f"{b}/rag/databases/main_db/import",
                files={"file": ("a.zip", c.get(f"{b}/rag/databases/main_db/export").content)},
            ),
        ),
        ("database_compact", lambda c, n, cfg: c.post(f"{b}/rag/databases/main_db/compact")),
        (
            "dataset_actions",
            lambda c, n, cfg: c.post(
                f"{b}/datasets/documents/actions",
                json={"action_type": "delete_file_chunks", "file_hash": n["file_hash"]},
            ),
        ),
        (
            "dataset_actions",
            lambda c, n, cfg: c.post(
                f"{b}/datasets/more/actions", json={"action_type": "delete_dataset_chunks"}
            ),
        ),
        ("task_get", lambda c, n, cfg: c.get(f"{b}/tasks/{n['task_id']}")),  # SUCCESS
        ("task_get", lambda c, n, cfg: c.get(f"{b}/tasks/{queued(c)}")),  # PENDING
        ("rag_query", lambda c, n, cfg: c.post(f"{b}/rag/query", json={"query": "glaciers"})),
        (
            "rag_evaluate",
            lambda c, n, cfg: c.post(
                f"{b}/rag/evaluate?strategy=basic&strategy=hybrid_search",
                content='{"query": "Why do glaciers retreat?", "relevant": ["glaciers.md"]}\n'
                '{"query": "retreat", "expected": ["every summer"]}\n'
                '{"query": "ice", "relevant": ["elsewhere.md"]}',
                headers={"Content-Type": "application/x-ndjson"},
            ),
        ),
        (
            "chat_completions",
            lambda c, n, cfg: c.post(
                f"{b}/chat/completions",
                json={"messages": [{"role": "user", "content": "Why do glaciers retreat?"}]},
            ),
        ),
        (
            "chat_completions",
            lambda c, n, cfg: c.post(
                f"{b}/chat/completions",
                headers={"X-No-Session": "1"},
                json={"messages": [{"role": "user", "content": "Why?"}], "stream": True},
            ),
        ),
        ("rag_health", lambda c, n, cfg: c.get(f"{b}/rag/health")),
        ("database_list", lambda c, n, cfg: c.get(f"{b}/rag/databases")),
        (
            "database_create",
            lambda c, n, cfg: c.post(
                f"{b}/rag/databases", json=cfg["rag"]["databases"][0] | {"name": "third_db"}
            ),
        ),
        ("database_get", lambda c, n, cfg: c.get(f"{b}/rag/databases/main_db")),
        (
            "database_update",
            lambda c, n, cfg: c.patch(f"{b}/rag/databases/third_db", json={"name": "third_db"}),
        ),
        ("event_logs_list", lambda c, n, cfg: c.get(f"{b}/event_logs")),
        ("event_log_get", lambda c, n, cfg: c.get(f"{b}/event_logs/{n['event_id']}")),
        ("examples_list", lambda c, n, cfg: c.get("/v1/examples")),
        (
            "example_datasets_list",
            lambda c, n, cfg: c.get(f"/v1/examples/{n['example_id']}/datasets"),
        ),
        (
            "example_import_project",
            lambda c, n, cfg: c.post(
                f"/v1/examples/{n['example_id']}/import-project",
                json={"namespace": "acme", "name": "imported", "process": False},
            ),
        ),
        (
            "example_import_data",
            lambda c, n, cfg: c.post(
                f"/v1/examples/{n['example_id']}/import-data",
                json={"namespace": "acme", "project": "bot", "process": False},
            ),
        ),
        ("example_import_dataset", import_dataset),
        ("cached_models_list", lambda c, n, cfg: c.get("/v1/models")),
        (
            "model_download",
            lambda c, n, cfg: c.post("/v1/models/download", json={"model_name": "acme/x"}),
        ),
        (
            "model_quantizations",
            on_hub(lambda c: c.get("/v1/models/acme/x-GGUF/quantizations")),
        ),
        (
            "model_validate_download",
            on_hub(
                lambda c: c.post(
                    "/v1/models/validate-download", json={"model_name": "acme/x-GGUF:Q4_K_M"}
                )
            ),
        ),
        ("model_delete", cached_model),
        ("task_cancel", lambda c, n, cfg: c.delete(f"{b}/tasks/{n['task_id']}")),
        (
            "dataset_data_delete",
            lambda c, n, cfg: c.delete(f"{b}/datasets/documents/data/{n['file_hash']}"),
        ),
        (
            "chat_session_delete",
            lambda c, n, cfg: c.delete(f"{b}/chat/sessions/{n['session_id']}"),
        ),
        ("chat_sessions_delete", lambda c, n, cfg: c.delete(f"{b}/chat/sessions")),
        ("database_reindex", lambda c, n, cfg: c.post(f"{b}/rag/databases/third_db/reindex")),
        ("database_delete", lambda c, n, cfg: c.delete(f"{b}/rag/databases/third_db")),
        ("dataset_delete", lambda c, n, cfg: c.delete(f"{b}/datasets/more")),
        ("project_delete", lambda c, n, cfg: c.delete("/v1/projects/acme/other")),
    ]


def _process_queued(client: TestClient) -> None:
    """Run the queued files with the worker's own function, in this process, so that queries
    find chunks and tasks have results."""
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    with state.db.session() as session:
        ids = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")).all()
    for file_id in ids:
        assert run_file(context, file_id) == "SUCCESS"


def _bodies(response: httpx.Response, media: str, schema: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The JSON answer and its schema; for a server-sent event stream, each event and the
    event's schema, then each event's `data` as JSON and the schema of its content."""
    if media != "text/event-stream":
        return [(response.json(), schema)]
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames, response.text
    data = schema["properties"]["data"]
    [content] = [
        part["contentSchema"] for part in data.get("anyOf", [data]) if "contentSchema" in part
    ]
    # OpenAI's end of a stream is the one frame that is not JSON.
    payloads = frames[:-1] if frames[-1] == "[DONE]" else frames
    return [({"data": frame}, schema) for frame in frames] + [
        (json.loads(frame), content) for frame in payloads
    ]


@pytest.mark.slow
def test_a_real_answer_of_every_route_matches_its_documented_schema(
    settings: Settings, model: OpenAIServer, no_hub: Path
) -> None:
    app = create_app(settings)
    spec = app.openapi()
    operations = _operations(spec)
    calls = _calls(no_hub)
    assert {operation_id for operation_id, _ in calls} == set(operations) - UNTYPED
    with TestClient(app) as client:
        names, config = populate(client, model)
        _process_queued(client)
        for operation_id, call in calls:
            successes = _successes(operations[operation_id])
            response = call(client, names, config)
            assert str(response.status_code) in successes, (operation_id, response.text)
            schemas = successes[str(response.status_code)]
            media = response.headers["content-type"].split(";")[0]
            assert media in schemas, (operation_id, media)
            schema = schemas[media]
            for body, part in _bodies(response, media, schema):
                validator = jsonschema.Draft202012Validator(
                    {**part, "components": spec["components"]}
                )
                errors = [e.message for e in validator.iter_errors(body)]
                assert not errors, (operation_id, body, errors)


@pytest.mark.usefixtures("project")
def test_fields_some_answers_leave_out_are_absent_not_null(client: TestClient) -> None:
    upload = client.post(f"{BASE}/datasets/documents/data", files={"file": ("a.md", b"# A")})
    assert upload.status_code == 200, upload.text
    assert "task_id" not in upload.json() and "task_uri" not in upload.json()
    created = client.post(
        f"{BASE}/datasets",
        json={
            "name": "more",
            "data_processing_strategy": "default_processor",
            "database": "main_db",
        },
    )
    assert "details" not in created.json()["dataset"]
    brief = client.get(f"{BASE}/datasets", params={"include_extra_details": False}).json()
    assert all("details" not in dataset for dataset in brief["datasets"])
    full = client.get(f"{BASE}/datasets").json()
    assert all(dataset["details"]["total_files"] >= 0 for dataset in full["datasets"])
