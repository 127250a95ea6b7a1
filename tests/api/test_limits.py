"""Limits that hold under abuse: JSON body size and depth, chat messages and characters; each
refusal a 413 or 422 `{"detail"}`, and a request just under each limit still served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llamafarm.api.limits import MAX_DEPTH
from llamafarm.settings import Settings

BASE = "/v1/projects/acme/bot"
JSON_KB = 64


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        max_json_kb=JSON_KB,
        allowed_hosts=["testserver"],
    )


def config_of(client: TestClient) -> dict[str, Any]:
    config: dict[str, Any] = client.get(BASE).json()["project"]["config"]
    return config


def padded(config: dict[str, Any], size: int) -> bytes:
    """The PUT body of `config` with its system prompt padded to make it `size` bytes long."""
    body = {"config": json.loads(json.dumps(config))}
    message = body["config"]["prompts"][0]["messages"][0]
    message["content"] += "x" * (size - len(json.dumps(body).encode()))
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


def put(client: TestClient, content: bytes) -> httpx.Response:
    return client.put(BASE, content=content, headers={"content-type": "application/json"})


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.usefixtures("project")
def test_json_bodies_have_their_own_limit(client: TestClient) -> None:
    config = config_of(client)
    assert put(client, padded(config, JSON_KB << 10)).status_code == 200
    response = put(client, padded(config, (JSON_KB << 10) + 1))
    assert response.status_code == 413
    assert f"{JSON_KB} KiB limit" in response.json()["detail"]
    # Uploads keep the upload limit.
    upload = client.post(
        f"{BASE}/datasets/documents/data", files={"file": ("big.txt", b"y" * (JSON_KB << 11))}
    )
    assert upload.status_code == 200, upload.text


@pytest.mark.usefixtures("project")
def test_a_json_body_without_content_length_is_counted(live_server: str) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(total // 1024):
            yield b"q" * 1024
        yield b'"}'

    with httpx.Client(base_url=live_server, timeout=30) as http:
        url = f"{BASE}/rag/query"
        headers = {"content-type": "application/json"}
        big = http.post(url, content=chunks(2 * JSON_KB << 10), headers=headers)
        assert big.status_code == 413, big.text
        assert "KiB limit" in big.json()["detail"]
        small = http.post(url, content=chunks(4096), headers=headers)
        assert small.status_code == 200, small.text


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 5000, 200_000])
def test_deep_json_is_refused(client: TestClient, depth: int) -> None:
    """Seen before: 500 levels in a PUT config recursed into a RecursionError (500)."""
    config = config_of(client)
    body = '{"config": ' + json.dumps({**config, "extra": "@"})[:-1] + ', "deep": '
    body += '{"a": ' * depth + "1" + "}" * depth + "}}"
    content = body.encode()
    if len(content) > JSON_KB << 10:
        content = b"[" * depth + b"]" * depth
    response = put(client, content)
    assert response.status_code in (413, 422), response.text
    assert "deeper than" in response.json()["detail"] or "limit" in response.json()["detail"]
    if len(content) <= JSON_KB << 10:
        assert response.status_code == 422
        assert response.json() == {
            "detail": f"Request body nests JSON deeper than {MAX_DEPTH} levels"
        }


@pytest.mark.usefixtures("project")
def test_json_just_under_the_depth_limit_is_served(client: TestClient) -> None:
    config = config_of(client)
    # body, config, runtime, models, the model, model_api_parameters: 6 levels
    parameters = config["runtime"]["models"][0]
    parameters["model_api_parameters"] = {"deep": nested(MAX_DEPTH - 6)}
    assert client.put(BASE, json={"config": config}).status_code == 200
    stored = config_of(client)["runtime"]["models"][0]["model_api_parameters"]
    assert stored == {"deep": nested(MAX_DEPTH - 6)}
    parameters["model_api_parameters"] = {"deep": nested(MAX_DEPTH - 5)}
    refused = client.put(BASE, json={"config": config})
    assert refused.status_code == 422
    assert "deeper than" in refused.json()["detail"]
