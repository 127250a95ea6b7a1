"""A project that names its model by Hugging Face id (LlamaFarm's `ORG/NAME:QUANT`) chats
with the GGUF file found in the local cache; one that is not cached is a 503 naming the
command that gets it. The cache is a real layout in a temp dir holding the bundled model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm import bundled
from llamafarm.api import create_app
from llamafarm.settings import Settings
from tests.models.gguf_cache import cache_gguf
from tests.models.hub import FakeHub

BASE = "/v1/projects/acme/bot"
MODEL = "acme/Tiny-GGUF"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    cache = tmp_path / "hub"
    real = bundled.chat_path()
    cache_gguf(cache, MODEL, {"tiny-Q4_K_M.gguf": real, "tiny-Q2_K.gguf": 1_000})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    settings = Settings(
        data_dir=tmp_path / "data", version_check_url="", allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        created = test_client.post("/v1/projects/acme", json={"name": "bot"})
        assert created.status_code == 201, created.text
        yield test_client


def use(client: TestClient, model: str) -> None:
    config: dict[str, Any] = client.get(BASE).json()["project"]["config"]
    config["runtime"] = {
        "models": [{"name": "default", "provider": "universal", "model": model}],
        "default_model": "default",
    }
    response = client.put(BASE, json={"config": config})
    assert response.status_code == 200, response.text


def chat(client: TestClient) -> Any:
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
    return client.post(f"{BASE}/chat/completions", json={**body, "rag_enabled": False})


@pytest.mark.timeout(300)
def test_a_model_named_by_id_and_quant_answers_from_the_cache(client: TestClient) -> None:
    use(client, f"{MODEL}:Q4_K_M")
    response = chat(client)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"]
    assert 0 < answer["usage"]["completion_tokens"] <= 4


@pytest.mark.parametrize("model", [f"{MODEL}:Q8_0", "acme/Elsewhere-GGUF:Q4_K_M"])
def test_a_model_not_in_the_cache_is_a_503_naming_the_command(
    client: TestClient, model: str
) -> None:
    use(client, model)  # the config is valid: the file may be fetched later
    response = chat(client)
    assert response.status_code == 503, response.text
    assert f"`lf models pull {model}`" in response.json()["detail"]


@pytest.mark.timeout(60)
def test_the_download_route_takes_an_id_with_a_quant_and_fetches_that_file(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = {f"o-{quant}.gguf": b"GGUF" + quant.encode() * 50 for quant in ("Q4_K_M", "Q8_0")}
    with FakeHub({"acme/Other-GGUF": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        body = {"provider": "universal", "model_name": "acme/Other-GGUF:Q8_0"}
        with client.stream("POST", "/v1/models/download", json=body) as response:
            assert response.status_code == 200, response.read()
            lines = [line for line in response.iter_lines() if line]
        bad = client.post("/v1/models/download", json={**body, "model_name": "acme/x:../y"})
    done = json.loads(lines[-1].removeprefix("data: "))
    assert done["event"] == "complete", lines
    assert done["path"].endswith("/o-Q8_0.gguf")
    assert Path(done["path"]).read_bytes() == repo["o-Q8_0.gguf"]
    assert not any(path.endswith("o-Q4_K_M.gguf") for _, path in hub.requests)
    assert bad.status_code == 400


@pytest.mark.timeout(60)
def test_the_quantizations_route_lists_a_repos_gguf_files(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = {"o-Q8_0.gguf": b"GGUF" + b"8" * 90, "o-Q4_K_M.gguf": b"GGUF" + b"4" * 40}
    with FakeHub({"acme/Other-GGUF": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        listed = client.get("/v1/models/acme/Other-GGUF/quantizations")
        missing = client.get("/v1/models/acme/Missing-GGUF/quantizations")
        bad = client.get("/v1/models/acme/x:../y/quantizations")
    assert listed.status_code == 200, listed.text
    assert listed.json()["options"] == [
        {
            "filename": "o-Q4_K_M.gguf",
            "quantization": "Q4_K_M",
            "size_bytes": 44,
            "size_human": "44B",
            "shards": 1,
            "default": True,
        },
        {
            "filename": "o-Q8_0.gguf",
            "quantization": "Q8_0",
            "size_bytes": 94,
            "size_human": "94B",
            "shards": 1,
            "default": False,
        },
    ]
    assert missing.status_code == 404 and "acme/Missing-GGUF" in missing.json()["detail"]
    assert bad.status_code == 400


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("no_hub")
def test_the_quantizations_route_is_a_503_when_the_hub_is_unreachable(
    client: TestClient,
) -> None:
    response = client.get("/v1/models/acme/Other-GGUF/quantizations")
    assert response.status_code == 503
    assert "Cannot reach the Hugging Face Hub" in response.json()["detail"]
    checked = client.post("/v1/models/validate-download", json={"model_name": "acme/x"})
    assert checked.status_code == 503


@pytest.mark.timeout(60)
def test_validate_download_says_whether_a_model_id_can_be_fetched(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = {"o-Q8_0.gguf": b"GGUF" + b"8" * 90}
    with FakeHub({"acme/Other-GGUF": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ok = client.post(
            "/v1/models/validate-download", json={"model_name": "acme/Other-GGUF:q8_0"}
        )
        no_quant = client.post(
            "/v1/models/validate-download", json={"model_id": "acme/Other-GGUF:Q2_K"}
        )
        bad = client.post("/v1/models/validate-download", json={"model_name": "../x"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["repo_exists"], body["quantization_exists"]) == (True, True)
    assert (body["files"], body["required_bytes"]) == (["o-Q8_0.gguf"], 94)
    assert body["can_download"] is (body["available_bytes"] >= 94)
    assert body["cache_info"]["free_bytes"] == body["available_bytes"]
    assert no_quant.status_code == 200
    assert no_quant.json()["quantization_exists"] is False
    assert no_quant.json()["can_download"] is False
    assert bad.status_code == 400


@pytest.mark.timeout(300)
def test_with_downloads_allowed_a_model_is_fetched_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled model, served as a repo's Q4_K_M by the loopback Hub, is fetched by the
    first chat that names it; the chat's event says so."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = {"tiny-Q4_K_M.gguf": bundled.chat_path().read_bytes(), "tiny-Q8_0.gguf": b"GGUF"}
    settings = Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        allowed_hosts=["testserver"],
        allow_downloads=True,
    )
    with FakeHub({MODEL: repo}) as hub, TestClient(create_app(settings)) as client:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        use(client, MODEL)
        response = chat(client)
        assert response.status_code == 200, response.text
        assert chat(client).status_code == 200  # cached now: not fetched again
        fetched = [path for method, path in hub.requests if method == "GET" and "resolve" in path]
        events = client.get(f"{BASE}/event_logs").json()["events"]
        first = client.get(f"{BASE}/event_logs/{events[-1]['event_id']}").json()
    assert [path.rsplit("/", 1)[-1] for path in fetched] == ["tiny-Q4_K_M.gguf"]
    steps = [sub["name"] for sub in first["sub_events"]]
    assert "model_download_start" in steps and "model_download_complete" in steps
    assert first["summary"]["status"] == "success"
