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
