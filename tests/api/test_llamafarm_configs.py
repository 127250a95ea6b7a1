"""LlamaFarm 0.0.27 project files (our own, written from its schemas, one per area): each
loads through PUT unchanged, comes back from GET as written, says what it does not honour,
and the RAG ones process a file and answer a query."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.test_rag import BASE, ingest, search
from tests.chat.openai_server import OpenAIServer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "llamafarm"
CONDITION = (
    "not evaluated: every chunk is embedded with the database's default embedding strategy "
    "(LlamaFarm 0.0.27 does not evaluate it either)"
)
WARNINGS: dict[str, list[str]] = {
    "minimal": [],
    "mcp": [],
    "rag-full": [
        f"rag.databases[0].embedding_strategies[0].condition: {CONDITION}",
        "rag.data_processing_strategies[0].extractors[0].condition: not evaluated: the "
        "extractor runs on every file its file_include_patterns match (LlamaFarm 0.0.27 does "
        "not evaluate it either)",
        "rag.data_processing_strategies[0].extractors[0].required_for: not evaluated: the "
        "extractor runs for every database (LlamaFarm 0.0.27 does not evaluate it either)",
    ],
    "components": [
        # Reported where the component is defined, not again where it is used.
        f"components.embedding_strategies[0].condition: {CONDITION}",
        "components.defaults.parser: not used: every data processing strategy names its "
        "parsers (LlamaFarm 0.0.27 does not use it either)",
    ],
    "datasets": [
        "datasets[0].files: ignored: the server keeps the list of a dataset's files itself "
        "(GET /v1/projects/{namespace}/{project}/datasets shows it)",
    ],
    "voice": ["voice: voice chat is not supported: the block is kept but nothing uses it"],
    "runtime": [
        "runtime.models[0].instructor_mode: structured output through instructor is not used; "
        "send `response_format` in the chat request instead",
        "runtime.models[0].encoder_config: encoder models are not served by the chat runtime; "
        "embedders are configured under rag.databases",
        "runtime.models[1].lemonade.backend: llamafarm does not start Lemonade; choose its "
        "backend when you start it",
        "runtime.models[1].lemonade.context_size: llamafarm does not start Lemonade; set its "
        "context when you start it",
    ],
}
TEXT = {
    "glaciers.txt": b"Alpine glaciers retreat every summer as the ice melts.",
    "orchard.md": b"# Orchard\n\nApple trees blossom in spring and bear fruit in autumn.",
}


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return loaded


def put(client: TestClient, config: dict[str, Any]) -> dict[str, Any]:
    response = client.put(BASE, json={"config": config})
    assert response.status_code == 200, response.text
    project: dict[str, Any] = response.json()["project"]
    return project


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_a_llamafarm_file_loads_round_trips_and_warns(
    client: TestClient, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = document(name)
    with caplog.at_level(logging.WARNING, logger="llamafarm.projects.lifecycle"):
        updated = put(client, config)
    assert updated["config"] == config
    assert updated["warnings"] == WARNINGS[name]
    assert updated["validation_error"] is None
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [f"project acme/bot: {w}" for w in WARNINGS[name]]

    shown = client.get(BASE).json()["project"]
    assert shown["config"] == config  # `${MCP_TOKEN:-none}` in mcp.yaml kept as written
    assert shown["warnings"] == WARNINGS[name]
    listed = client.get("/v1/projects/acme").json()["projects"]
    assert [p["warnings"] for p in listed] == [WARNINGS[name]]


@pytest.mark.usefixtures("project")
def test_rag_full_processes_and_answers_with_its_own_strategy(
    client: TestClient, model: OpenAIServer
) -> None:
    config = document("rag-full")
    config["runtime"]["base_url"] = model.base_url
    put(client, config)
    ingest(client, TEXT)
    body = search(client, "Why do alpine glaciers shrink?")
    assert body["database_used"] == "main_db"
    assert body["retrieval_strategy_used"] == "basic_search"
    assert body["results"][0]["metadata"]["source"] == "glaciers.txt"
    assert len(body["results"]) == 2  # basic_search's top_k: 3, two chunks stored

    answer = client.post(
        f"{BASE}/chat/completions",
        json={"messages": [{"role": "user", "content": "Why do glaciers shrink?"}]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == model.text
    system = [m["content"] for m in model.requests[-1].body["messages"] if m["role"] == "system"]
    assert any("glaciers retreat every summer" in text for text in system)


@pytest.mark.usefixtures("project")
def test_components_are_resolved_by_name(client: TestClient) -> None:
    put(client, document("components"))
    ingest(client, TEXT)
    body = search(client, "When do apple trees blossom?")
    assert body["retrieval_strategy_used"] == "blended"  # the database's reference
    assert body["results"][0]["metadata"]["source"] == "orchard.md"  # the rag.components parser

    defaults = client.get(f"{BASE}/rag/databases/defaults_db").json()  # components.defaults
    assert [s["name"] for s in defaults["embedding_strategies"]] == ["minilm"]
    assert [s["name"] for s in defaults["retrieval_strategies"]] == ["top_three"]
    assert defaults["default_embedding_strategy"] == "minilm"
    assert defaults["default_retrieval_strategy"] == "top_three"


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["rag"]["databases"][0].update(embedding_strategy="nope"),
            "rag.databases[0].embedding_strategy: unknown component 'nope' "
            "(components.embedding_strategies: minilm)",
        ),
        (
            lambda c: c["rag"]["data_processing_strategies"][0]["parsers"].append("nope"),
            "rag.data_processing_strategies[0].parsers[3]: unknown component 'nope' "
            "(components.parsers: markdown, plain_text)",
        ),
        (
            lambda c: c["components"]["defaults"].update(retrieval_strategy="nope"),
            "components.defaults.retrieval_strategy: unknown component 'nope' "
            "(components.retrieval_strategies: blended, top_three)",
        ),
        (
            lambda c: c["rag"]["components"]["parsers"][0].update(name="plain_text"),
            "rag.components.parsers: ['plain_text'] are defined in components.parsers too",
        ),
    ],
)
def test_a_bad_component_reference_is_a_422_naming_it(
    client: TestClient, change: Any, message: str
) -> None:
    config = document("components")
    change(config)
    response = client.put(BASE, json={"config": config})
    assert response.status_code == 422
    assert response.json() == {"detail": f"Invalid config: {message}"}


@pytest.mark.usefixtures("project")
def test_a_dataset_without_strategy_uses_universal_rag_and_auto_processes(
    client: TestClient,
) -> None:
    put(client, document("datasets"))
    strategies = client.get(f"{BASE}/datasets/strategies").json()
    assert strategies["data_processing_strategies"] == ["universal_rag"]
    listed = {d["name"]: d for d in client.get(f"{BASE}/datasets").json()["datasets"]}
    assert listed["documents"]["data_processing_strategy"] == "universal_rag"

    queued = client.post(
        f"{BASE}/datasets/documents/data", files={"file": ("glaciers.txt", TEXT["glaciers.txt"])}
    )
    assert queued.status_code == 200, queued.text
    assert queued.json()["task_id"]  # auto_process: true, and the upload did not say
    held = client.post(
        f"{BASE}/datasets/manual/data", files={"file": ("orchard.md", TEXT["orchard.md"])}
    )
    assert "task_id" not in held.json()  # auto_process: false
    asked = client.post(
        f"{BASE}/datasets/documents/data",
        params={"auto_process": "false"},
        files={"file": ("b.txt", b"Bees pollinate the orchard.")},
    )
    assert "task_id" not in asked.json()  # the upload's own parameter wins

    state = client.app.state  # type: ignore[attr-defined]
    with state.db.session() as session:
        pending = session.scalars(select(TaskFile.id).where(TaskFile.state == "PENDING")).all()
    context = WorkerContext(db=state.db, projects=state.projects, worker="test")
    assert [run_file(context, file_id) for file_id in pending] == ["SUCCESS"]
    body = search(client, "Why do alpine glaciers shrink?")
    assert body["results"][0]["metadata"]["source"] == "glaciers.txt"


@pytest.mark.usefixtures("project")
def test_unknown_keys_stay_a_422_naming_the_path(client: TestClient) -> None:
    config = document("rag-full")
    config["rag"]["data_processing_strategies"][0]["directory_config"] = {"recursive": True}
    config["voice"] = {"tts": {"pitch": 2}}
    response = client.put(BASE, json={"config": config})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "Invalid config: rag.data_processing_strategies[0].directory_config: unknown key; "
        "voice.tts.pitch: unknown key"
    )


@pytest.mark.usefixtures("project")
def test_runtime_answers_with_its_extra_body_tools_and_prompts(
    client: TestClient, model: OpenAIServer
) -> None:
    config = document("runtime")
    for entry in config["runtime"]["models"][:2]:
        entry["base_url"] = model.base_url
    put(client, config)
    ingest(client, TEXT)
    answer = client.post(
        f"{BASE}/chat/completions",
        json={"messages": [{"role": "user", "content": "Why do glaciers shrink?"}]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["sources"][0]["source"] == "glaciers.txt"  # target_database
    sent = model.requests[-1].body
    assert sent["temperature"] == 0.2 and sent["n_ctx"] == 2048 and sent["think"] is False
    assert sent["tools"][0]["function"]["name"] == "lookup_order"
    roles = [m["role"] for m in sent["messages"]]
    assert roles[:4] == ["system", "user", "assistant", "tool"]  # the prompt sets, in order
    assert "the shop" in sent["messages"][0]["content"]

    lemon = client.post(
        f"{BASE}/chat/completions",
        json={"model": "lemon", "messages": [{"role": "user", "content": "Hi"}], "tools": []},
    )
    assert lemon.status_code == 200, lemon.text
    assert lemon.json()["sources"] == []  # its rag_enabled: false
    assert model.requests[-1].headers["authorization"] == "Bearer lemonade"
    assert "lookup_order" not in str(model.requests[-1].body)  # no tools for it
