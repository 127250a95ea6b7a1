"""API keys: every route but liveness needs one once any exists; namespace and read-only keys
reach only what they may, through the API, the `openai` SDK and `/mcp` tools alike."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import openai
import pytest
from fastapi.testclient import TestClient
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from llamafarm.api import create_app
from llamafarm.api.auth import exposure_problem
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from llamafarm.state.keys import create_key, revoke_key
from tests.api.test_mcp import call, failure
from tests.chat.openai_server import OpenAIServer


@pytest.fixture
def keys(settings: Settings) -> Iterator[dict[str, str]]:
    """Four keys, made before the server starts: all, acme only, read-only, acme read-only."""
    db = StateDB(settings.state_url)
    made = {
        "admin": create_key(db, name="admin"),
        "acme": create_key(db, name="acme", namespace="acme"),
        "reader": create_key(db, name="reader", read_only=True),
        "acme-reader": create_key(db, name="acme-reader", namespace="acme", read_only=True),
    }
    db.close()
    yield made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def authed(keys: dict[str, str], client: TestClient) -> TestClient:
    """The client with two projects, acme/bot and other/secret, made with the admin key."""
    for namespace, name in (("acme", "bot"), ("other", "secret")):
        response = client.post(
            f"/v1/projects/{namespace}", json={"name": name}, headers=bearer(keys["admin"])
        )
        assert response.status_code == 201, response.text
    return client


def test_without_keys_nothing_is_asked(client: TestClient) -> None:
    assert client.get("/v1/projects/acme").status_code == 200


def test_a_key_is_required_once_one_exists(authed: TestClient, keys: dict[str, str]) -> None:
    for headers in ({}, bearer("lf_wrong"), {"X-API-Key": "lf_wrong"}, {"Authorization": "x"}):
        response = authed.get("/v1/projects/acme", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].endswith(
            "send it as 'Authorization: Bearer <key>' or 'X-API-Key'"
        )
    assert authed.post("/v1/projects/acme", json={"name": "x"}).status_code == 401
    assert authed.get("/health/liveness").status_code == 200
    assert authed.get("/health").status_code == 401
    ok = authed.get("/v1/projects/acme", headers=bearer(keys["admin"]))
    assert ok.status_code == 200 and ok.json()["total"] == 1
    assert authed.get("/v1/projects/acme", headers={"X-API-Key": keys["admin"]}).status_code == 200


def test_require_auth_without_keys(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        version_check_url="",
        allowed_hosts=["testserver"],
        require_auth=True,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/projects/acme").status_code == 401
        assert client.get("/health/liveness").status_code == 200


def test_a_namespace_key_sees_only_its_namespace(authed: TestClient, keys: dict[str, str]) -> None:
    acme = bearer(keys["acme"])
    for path in ("/v1/projects/other/secret", "/v1/projects/other", "/v1/projects/nope/x"):
        response = authed.get(path, headers=acme)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    for method, path in (
        ("PUT", "/v1/projects/other/secret"),
        ("DELETE", "/v1/projects/other/secret"),
        ("GET", "/v1/projects/other/secret/datasets"),
        ("POST", "/v1/projects/other/secret/rag/query"),
    ):
        assert authed.request(method, path, headers=acme).status_code == 404, path
    listed = authed.get("/v1/projects/acme", headers=acme).json()
    assert [p["name"] for p in listed["projects"]] == ["bot"]
    assert authed.get("/v1/projects/acme/bot", headers=acme).status_code == 200
    created = authed.post("/v1/projects/acme", json={"name": "new"}, headers=acme)
    assert created.status_code == 201
    # Global writes are not a namespace's.
    download = authed.post("/v1/models/download", json={"model_name": "x/y"}, headers=acme)
    assert download.status_code == 403 and "namespace 'acme'" in download.json()["detail"]
    assert authed.delete("/v1/models/x", headers=acme).status_code == 403
    imported = authed.post(
        "/v1/examples/anything/import-project", json={"namespace": "other"}, headers=acme
    )
    assert imported.status_code == 403
    assert imported.json() == {"detail": "The key 'acme' is limited to namespace 'acme'"}
    assert authed.get("/v1/projects/other/secret", headers=bearer(keys["admin"])).status_code == 200


@pytest.mark.slow
def test_a_read_only_key_reads_and_queries_but_writes_nothing(
    authed: TestClient, keys: dict[str, str]
) -> None:
    reader = bearer(keys["reader"])
    base = "/v1/projects/acme/bot"
    writes = [
        authed.put(base, json={"config": {}}, headers=reader),
        authed.delete(base, headers=reader),
        authed.post("/v1/projects/acme", json={"name": "x"}, headers=reader),
        authed.post(
            f"{base}/datasets/documents/data", files={"file": ("a.txt", b"a")}, headers=reader
        ),
        authed.delete(f"{base}/chat/sessions", headers=reader),
    ]
    for response in writes:
        assert response.status_code == 403, response.request.url
        assert response.json()["detail"].startswith("The key 'reader' is read-only")
    assert authed.get(base, headers=reader).status_code == 200
    query = authed.post(f"{base}/rag/query", json={"query": "ice"}, headers=reader)
    assert query.status_code == 200, query.text
    # Evaluating only asks too: past the key check, an empty store knows no such document.
    evaluated = authed.post(
        f"{base}/rag/evaluate", content='{"query": "ice", "relevant": ["a.txt"]}', headers=reader
    )
    assert evaluated.status_code == 400, evaluated.text
    assert "unknown: a.txt" in evaluated.json()["detail"]
    datasets = authed.get(f"{base}/datasets", headers=reader).json()["datasets"]
    assert [d["files"] for d in datasets] == [[]]


def test_keys_take_effect_and_end_without_a_restart(
    authed: TestClient, settings: Settings, keys: dict[str, str]
) -> None:
    db = StateDB(settings.state_url)
    late = create_key(db, name="late")
    assert (
        wait_for(lambda: authed.get("/v1/projects/acme", headers=bearer(late)).status_code) == 200
    )
    revoke_key(db, "late")
    db.close()
    assert (
        wait_for(lambda: authed.get("/v1/projects/acme", headers=bearer(late)).status_code) == 401
    )


def wait_for(status: Any, *, until: float = 10.0) -> int:
    """The status once it changes from what the cache last said, or the last one at the deadline."""
    first = status()
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        now: int = status()
        if now != first:
            return now
        time.sleep(0.05)
    return int(first)


@pytest.mark.slow
def test_the_openai_sdk_sends_its_api_key(keys: dict[str, str], live_server: str) -> None:
    admin = bearer(keys["admin"])
    made = httpx.post(f"{live_server}/v1/projects/acme", json={"name": "bot"}, headers=admin)
    assert made.status_code == 201
    project = f"{live_server}/v1/projects/acme/bot"
    with OpenAIServer(text="Because the ice melts.") as fake:
        config = made.json()["project"]["config"]
        config["runtime"] = {
            "models": [
                {
                    "name": "default",
                    "provider": "openai",
                    "model": "fake-model",
                    "base_url": fake.base_url,
                    "prompts": ["default"],
                }
            ],
            "default_model": "default",
        }
        put = httpx.put(project, json={"config": config}, headers=admin)
        assert put.status_code == 200, put.text
        with openai.OpenAI(base_url=project, api_key=keys["acme-reader"], max_retries=0) as sdk:
            answer = sdk.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": "Why?"}],
                extra_body={"rag_enabled": False},
            )
            assert answer.choices[0].message.content == "Because the ice melts."
    wrong = openai.OpenAI(base_url=project, api_key="lf_wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    other = f"{live_server}/v1/projects/other/bot"
    elsewhere = openai.OpenAI(base_url=other, api_key=keys["acme"], max_retries=0)
    with elsewhere, pytest.raises(openai.NotFoundError):
        elsewhere.models.list()


@asynccontextmanager
async def mcp_session(url: str, key: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=bearer(key)) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@pytest.mark.slow
def test_mcp_tools_reach_only_what_the_key_reaches(keys: dict[str, str], live_server: str) -> None:
    for namespace in ("acme", "other"):
        made = httpx.post(
            f"{live_server}/v1/projects/{namespace}",
            json={"name": "bot"},
            headers=bearer(keys["admin"]),
        )
        assert made.status_code == 201

    refused = httpx.post(f"{live_server}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401

    async def agent() -> None:
        async with mcp_session(live_server, keys["acme"]) as session:
            assert await call(session, "project_get", namespace="acme", project="bot")
            hidden = await failure(session, "project_get", namespace="other", project="bot")
            assert hidden == "Error 404: Project other/bot not found"
            listed = await failure(session, "projects_list", namespace="other")
            assert listed.startswith("Error 404: ")
            deleted = await failure(session, "project_create", namespace="other", name="planted")
            assert deleted.startswith("Error 404: ")
        async with mcp_session(live_server, keys["acme-reader"]) as session:
            assert (await call(session, "projects_list", namespace="acme"))["total"] == 1
            write = await failure(session, "project_create", namespace="acme", name="planted")
            assert write.startswith("Error 403: The key 'acme-reader' is read-only")

    anyio.run(agent)
    listed = httpx.get(f"{live_server}/v1/projects/other", headers=bearer(keys["admin"])).json()
    assert [p["name"] for p in listed["projects"]] == ["bot"]


@pytest.mark.parametrize(
    ("host", "has_keys", "require", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("localhost", False, False, False),
        ("::1", False, False, False),
        ("127.0.0.2", False, False, False),
        ("0.0.0.0", False, False, True),
        ("::", False, False, True),
        ("192.168.1.5", False, False, True),
        ("box.local", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
    ],
)
def test_serving_the_network_needs_keys(
    host: str, has_keys: bool, require: bool, refused: bool
) -> None:
    problem = exposure_problem(host, has_keys=has_keys, require_auth=require)
    assert (problem is not None) == refused
    if problem:
        assert "--insecure-no-auth" in problem and "lf keys create" in problem


def test_a_client_without_a_key_is_refused_before_its_body_is_read(
    authed: TestClient, keys: dict[str, str]
) -> None:
    """Seen before: a 2 MiB JSON body was read, and a deep one parsed, for a client with no
    key, which got 413 and 422 answers before its 401."""
    deep = b"[" * 10_000 + b"]" * 10_000
    large = b'{"query": "' + b"a" * (3 << 20) + b'"}'
    for body in (deep, large):
        headers = {"Content-Type": "application/json"}
        response = authed.post("/v1/projects/acme/bot/rag/query", content=body, headers=headers)
        assert response.status_code == 401, response.text
        with_key = {**headers, **bearer(keys["admin"])}
        response = authed.post("/v1/projects/acme/bot/rag/query", content=body, headers=with_key)
        assert response.status_code in (413, 422), response.text
