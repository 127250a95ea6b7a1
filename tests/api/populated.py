"""A project `acme/bot` with one of everything, for the tests that visit every route."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.chat.openai_server import OpenAIServer

BASE = "/v1/projects/acme/bot"


def populate(client: TestClient, model: OpenAIServer) -> tuple[dict[str, str], dict[str, Any]]:
    """Make `acme/bot` with a dataset with a file, a spare RAG database, a chat session, a
    queued task and an event: the names the path parameters may take, and the project's config
    (whose chat model is `model`)."""

    def ok(response: Any) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    config = ok(client.post("/v1/projects/acme", json={"name": "bot"}))["project"]["config"]
    config["runtime"] = {
        "models": [
            {
                "name": "default",
                "provider": "openai",
                "model": "fake-model",
                "base_url": model.base_url,
                "prompts": ["default"],
            }
        ],
        "default_model": "default",
    }
    ok(client.put(BASE, json={"config": config}))
    spare = config["rag"]["databases"][0] | {"name": "spare_db"}
    ok(client.post(f"{BASE}/rag/databases", json=spare))
    upload = ok(
        client.post(
            f"{BASE}/datasets/documents/data",
            files={"file": ("glaciers.md", b"# Glaciers\n\nAlpine glaciers retreat every summer.")},
        )
    )
    task = ok(client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"}))
    chat = client.post(
        f"{BASE}/chat/completions",
        json={"messages": [{"role": "user", "content": "Why?"}], "rag_enabled": False},
    )
    assert chat.status_code == 200, chat.text
    events = ok(client.get(f"{BASE}/event_logs"))
    examples = ok(client.get("/v1/examples"))
    names = {
        "namespace": "acme",
        "project": "bot",
        "dataset": "documents",
        "database": "spare_db",  # main_db is in use by the dataset: deleting it is a 409
        "file_hash": upload["hash"],
        "task_id": task["task_id"],
        "session_id": chat.headers["X-Session-ID"],
        "event_id": events["events"][0]["event_id"],
        "example_id": examples["examples"][0]["id"],
    }
    return names, config
