"""What a config sent through the API may make the server do: the two attacks of issue 13 (a
stdio MCP server running `sh`, a server secret sent to a client's URL), model paths outside the
model roots, and a canary secret that must come back in no response, event log or log line."""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.api import create_app
from llamafarm.settings import Settings
from llamafarm.state import EventLog, StateDB
from tests.chat.openai_server import OpenAIServer

BASE = "/v1/projects/acme/bot"
ASK = [{"role": "user", "content": "hello"}]
CANARY = "zq7canary0secret4x"
"""A value a name may hold too, so that it can fill names, URLs, keys and headers alike."""
UNREACHABLE = "http://127.0.0.1:9"
"""The discard port on loopback: nothing listens, so connections are refused at once."""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CANARY_SECRET", CANARY)
    monkeypatch.setenv("CANARY_NAME", CANARY + "db")
    monkeypatch.setenv("SERVER_ONLY_SECRET", "not-for-clients-" + CANARY)
    (tmp_path / "models").mkdir()
    return Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        config_env_allow=["CANARY_*"],
        models_dir=tmp_path / "models",
        allowed_hosts=["testserver"],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def fake() -> Iterator[OpenAIServer]:
    with OpenAIServer(text="Hi there.", chunk_size=4) as server:
        yield server


def template(client: TestClient) -> dict[str, Any]:
    response = client.post("/v1/projects/acme", json={"name": "bot"})
    assert response.status_code == 201, response.text
    config: dict[str, Any] = response.json()["project"]["config"]
    return config


def put(client: TestClient, config: dict[str, Any]) -> httpx.Response:
    return client.put(BASE, json={"config": config})


# -- commands ---------------------------------------------------------------------------------


def sh_server(out: Path) -> dict[str, Any]:
    """The attack of issue 13: a stdio 'MCP server' that is a shell writing who runs it."""
    return {
        "name": "pwn",
        "transport": "stdio",
        "command": "sh",
        "args": ["-c", f"id > {out}/who.txt; env > {out}/env.txt"],
    }


def test_a_config_cannot_start_a_command_the_operator_did_not_allow(
    client: TestClient, settings: Settings, fake: OpenAIServer, tmp_path: Path
) -> None:
    config = template(client)
    config["runtime"] = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    for command in ("sh", "./sh", "/bin/sh", "sh;id", sys.executable):
        config["mcp"] = {"servers": [{**sh_server(tmp_path), "command": command}]}
        response = put(client, config)
        assert response.status_code == 422, response.text
        assert "LF_MCP_ALLOWED_COMMANDS" in response.json()["detail"]
        assert f"command {command!r} is not allowed" in response.json()["detail"]

    # Written to disk by hand, it is refused when loaded, and nothing runs.
    config["mcp"] = {"servers": [sh_server(tmp_path)]}
    path = settings.projects_dir / "acme" / "bot" / "llamafarm.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    for stream in (False, True):
        response = client.post(f"{BASE}/chat/completions", json={"messages": ASK, "stream": stream})
        assert response.status_code == 422, response.text
        assert "LF_MCP_ALLOWED_COMMANDS" in response.json()["detail"]
    assert not (tmp_path / "who.txt").exists() and not (tmp_path / "env.txt").exists()
    assert fake.chat_bodies() == []


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "PATH", "PYTHONPATH",
             "NODE_OPTIONS", "BASH_ENV", "ENV", "path", "PERL5OPT"]
)  # fmt: skip
def test_an_mcp_server_env_cannot_set_loader_variables(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        mcp_allowed_commands=[sys.executable],
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        config = template(client)
        server = {"name": "calc", "transport": "stdio", "command": sys.executable}
        config["mcp"] = {"servers": [{**server, "env": {"MCP_CALLS_LOG": "x"}}]}
        assert put(client, config).status_code == 200
        config["mcp"] = {"servers": [{**server, "env": {name: "/tmp/x"}}]}
        response = put(client, config)
        assert response.status_code == 422, response.text
        assert f"mcp.servers[0].env.{name}: this variable changes" in response.json()["detail"]


# -- secrets ----------------------------------------------------------------------------------


def test_a_secret_the_operator_did_not_allow_is_not_substituted(
    client: TestClient, fake: OpenAIServer
) -> None:
    """The attack of issue 13: the server's secret as the api_key of a client's base_url."""
    config = template(client)
    details = []
    for variable in ("SERVER_ONLY_SECRET", "NO_SUCH_VARIABLE_AT_ALL"):
        config["runtime"] = {
            "provider": "openai",
            "model": "fake-model",
            "base_url": fake.base_url,
            "api_key": f"${{{variable}}}",
        }
        response = put(client, config)
        assert response.status_code == 422, response.text
        details.append(response.json()["detail"].replace(variable, "VAR"))
    # One message for a variable that is set and one that is not: nothing tells them apart.
    assert details[0] == details[1]
    assert "LF_CONFIG_ENV_ALLOW" in details[0]
    assert "not-for-clients" not in json.dumps(details)
    assert fake.requests == []  # nothing was sent anywhere


def canary_config(client: TestClient, fake: OpenAIServer) -> dict[str, Any]:
    """Every kind of field a secret can fill: keys, URLs, headers, names, model ids."""
    config = template(client)
    secret = "${CANARY_SECRET}"
    config["runtime"] = {
        "models": [
            {
                "name": "good",
                "provider": "openai",
                "model": "fake-model",
                "base_url": fake.base_url,
                "api_key": secret,
                "description": f"key {secret}",
                "model_api_parameters": {"user": secret},
                "mcp_servers": [],
            },
            {
                "name": "down",
                "provider": "openai",
                "model": f"m-{secret}",
                "base_url": f"{UNREACHABLE}/{secret}/v1",
                "api_key": secret,
                "mcp_servers": [],
            },
            {
                "name": "tooled",
                "provider": "openai",
                "model": "fake-model",
                "base_url": fake.base_url,
                "mcp_servers": ["remote"],
            },
        ],
        "default_model": "good",
    }
    config["mcp"] = {
        "servers": [
            {
                "name": "remote",
                "transport": "http",
                "url": f"{UNREACHABLE}/{secret}/mcp",
                "headers": {"Authorization": f"Bearer {secret}"},
                "start_timeout": 10,
            }
        ]
    }
    config["rag"]["default_database"] = "${CANARY_NAME}"
    config["rag"]["databases"] = [
        {
            "name": "${CANARY_NAME}",
            "type": "ChromaStore",
            "config": {"collection_name": "${CANARY_NAME}"},
            "embedding_strategies": [
                {
                    "name": "remote",
                    "type": "OpenAIEmbedder",
                    "config": {
                        "base_url": f"{UNREACHABLE}/{secret}",
                        "api_key": secret,
                        "model": f"e-{secret}",
                    },
                }
            ],
            "retrieval_strategies": [{"name": "basic", "type": "BasicSimilarityStrategy"}],
        }
    ]
    config["datasets"] = [
        {**config["datasets"][0], "database": "${CANARY_NAME}"}
    ]  # the template's dataset, on the canary database
    return config


def test_a_canary_secret_comes_back_in_no_response_event_or_log(
    client: TestClient,
    settings: Settings,
    fake: OpenAIServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Response] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = client.request(method, path, **kwargs)
        seen.append(response)
        return response

    config = canary_config(client, fake)
    assert call("PUT", BASE, json={"config": config}).status_code == 200
    assert call("GET", BASE).json()["project"]["config"] == config  # placeholders kept
    call("GET", "/v1/projects/acme")
    models = call("GET", f"{BASE}/models")
    assert models.status_code == 200 and "${CANARY_SECRET}" in models.text
    listed = call("GET", f"{BASE}/rag/databases")
    assert listed.json()["default_database"] == "${CANARY_NAME}"
    shown = call("GET", f"{BASE}/rag/databases/{CANARY}db")  # the name only the server knows
    assert shown.status_code == 200 and "${CANARY_SECRET}" in shown.text
    assert call("POST", f"{BASE}/rag/query", json={"query": "glaciers"}).status_code >= 400
    call("GET", f"{BASE}/rag/health")
    for model in ("good", "down", "tooled"):
        for stream in (False, True):
            call(
                "POST",
                f"{BASE}/chat/completions",
                json={"messages": ASK, "model": model, "stream": stream, "rag_enabled": False},
            )
    # The secret did reach the model server it was meant for (so the check below can fail).
    assert any(r.headers.get("authorization") == f"Bearer {CANARY}" for r in fake.requests)
    assert any(body.get("user") == CANARY for body in fake.chat_bodies())

    page = call("GET", f"{BASE}/event_logs").json()
    assert page["events"]
    for event in page["events"]:
        call("GET", f"{BASE}/event_logs/{event['event_id']}")

    # A validation error that would quote a substituted value.
    broken = {**config, "datasets": [{**config["datasets"][0], "database": "${CANARY_SECRET}"}]}
    broken["rag"] = {**config["rag"], "default_database": None}
    broken["rag"]["databases"] = [{**config["rag"]["databases"][0], "name": "main"}]
    invalid = call("PUT", BASE, json={"config": broken})
    assert invalid.status_code == 422 and "unknown database '${CANARY_SECRET}'" in invalid.text

    for response in seen:
        where = f"{response.request.method} {response.request.url.path}"
        assert CANARY not in response.text, where
        assert CANARY not in json.dumps(dict(response.headers)), where
    with StateDB(settings.state_url).session() as session:
        rows = session.scalars(select(EventLog)).all()
        stored = json.dumps([[r.summary, r.data, r.sub_events] for r in rows])
    assert rows and CANARY not in stored
    formatter = logging.Formatter("%(message)s")
    logged = [formatter.format(record) for record in caplog.records]
    assert any("${CANARY_SECRET}" in line for line in logged)  # URLs were logged, redacted
    assert not [line for line in logged if CANARY in line]
    assert CANARY not in caplog.text


# -- models -----------------------------------------------------------------------------------


def test_a_model_file_must_lie_inside_the_model_roots(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    config = template(client)
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(b"GGUF junk")
    assert settings.models_dir is not None
    inside = settings.models_dir / "inside.gguf"
    inside.write_bytes(b"GGUF junk")
    (settings.models_dir / "link.gguf").symlink_to(outside)
    upload = client.post(f"{BASE}/datasets/documents/data", files={"file": ("m.gguf", b"GGUF!")})
    assert upload.status_code == 200, upload.text
    uploaded = [
        p for p in settings.data_dir.rglob("*") if p.is_file() and p.read_bytes() == b"GGUF!"
    ]
    assert uploaded  # the upload is on disk, in the data dir

    def refused(model: str) -> str:
        config["runtime"] = {"provider": "universal", "model": model}
        response = put(client, config)
        assert response.status_code == 422, response.text
        detail: str = response.json()["detail"]
        assert "LF_MODELS_DIR" in detail and model not in detail
        return detail

    messages = {
        refused(str(outside)),
        refused(str(tmp_path / "missing.gguf")),  # the same message: existence is not told
        refused(str(settings.models_dir / "link.gguf")),  # symlinks are followed
        refused(str(settings.models_dir / ".." / "outside.gguf")),
        refused(str(uploaded[0])),
        refused("relative/dir/model.gguf"),
        refused("./relative/model.gguf"),
        refused("/etc/passwd"),
    }
    assert len(messages) == 1
    config["runtime"] = {"provider": "universal", "model": str(inside)}
    assert put(client, config).status_code == 200

    # The embedder's model folder, by PUT and by the rag database routes.
    database = config["rag"]["databases"][0]
    embedding = {"name": "local", "type": "UniversalEmbedder", "config": {"model": str(tmp_path)}}
    local = {"embedding_strategies": [embedding], "default_embedding_strategy": "local"}
    body = {**database, "name": "other", **local}
    response = client.post(f"{BASE}/rag/databases", json=body)
    assert response.status_code == 422 and "LF_MODELS_DIR" in response.json()["detail"]
    missing = {**embedding, "config": {"model": str(tmp_path / "nothing-here")}}
    again = client.post(f"{BASE}/rag/databases", json={**body, "embedding_strategies": [missing]})
    assert again.status_code == 422
    assert again.json()["detail"] == response.json()["detail"]
    patched = client.patch(f"{BASE}/rag/databases/{database['name']}", json=local)
    assert patched.status_code == 422 and "LF_MODELS_DIR" in patched.json()["detail"]


def test_a_secret_echoed_encoded_by_a_model_server_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: OpenAIServer
) -> None:
    """A model server's error quoting the key percent-encoded (a URL) or in base64 (a Basic
    auth header): seen before the fix, the 502 carried both, readable by any chat client."""
    secret = "zq7/canary+secret=4x"
    monkeypatch.setenv("CANARY_URLISH", secret)
    encoded = [
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"user:{secret}".encode()).decode(),
    ]
    fake.mode, fake.status = "error", 401
    fake.error_body = json.dumps({"error": {"message": " ".join(encoded)}}).encode()
    settings = Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        config_env_allow=["CANARY_*"],
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        config = template(client)
        model = {"provider": "openai", "model": "m", "base_url": fake.base_url}
        config["runtime"] = {**model, "api_key": "${CANARY_URLISH}"}
        assert put(client, config).status_code == 200
        for stream in (False, True):
            body = {"messages": ASK, "stream": stream, "rag_enabled": False}
            response = client.post(f"{BASE}/chat/completions", json=body)
            assert response.status_code == 502, response.text
            assert "${CANARY_URLISH}" in response.text
            for form in encoded:
                assert form not in response.text
    assert fake.requests[0].headers["authorization"] == f"Bearer {secret}"


def test_a_secret_spelled_out_over_stream_frames_is_redacted(
    client: TestClient, fake: OpenAIServer
) -> None:
    """Seen before the fix: each SSE frame was redacted alone, so a secret a model sent in
    pieces reached the client whole once the pieces were put together."""
    fake.text, fake.chunk_size, fake.delay = f"the key is {CANARY}, and {CANARY[:5]}", 3, 0.01
    config = template(client)
    config["runtime"] = {"provider": "openai", "model": "m", "base_url": fake.base_url}
    config["runtime"]["api_key"] = "${CANARY_SECRET}"
    assert put(client, config).status_code == 200
    body = {"messages": ASK, "stream": True, "rag_enabled": False}
    with client.stream("POST", f"{BASE}/chat/completions", json=body) as response:
        assert response.status_code == 200
        frames = [
            json.loads(line.removeprefix("data: "))
            for line in response.iter_lines()
            if line.startswith("data: {")
        ]
    pieces = [c["delta"].get("content") or "" for f in frames for c in f["choices"]]
    assert len([p for p in pieces if p]) > 2  # it did come in pieces
    assert "".join(pieces) == f"the key is ${{CANARY_SECRET}}, and {CANARY[:5]}"
