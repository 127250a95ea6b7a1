"""Which local chat models the server holds: `GET /v1/models` lists the loaded ones,
`keep_loaded` models load at start, and `LF_MODEL_MEMORY_GB` refuses a model that does not fit
with a 503 that says why. Against the real bundled model."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm import bundled
from llamafarm.api import create_app
from llamafarm.settings import Settings
from tests.api.test_chat import BASE, chat

pytestmark = pytest.mark.slow


def use_bundled(client: TestClient, **model: Any) -> None:
    config = client.get(BASE).json()["project"]["config"]
    config["runtime"] = {
        "models": [{"name": "local", "provider": "universal", "model": bundled.CHAT, **model}]
    }
    response = client.put(BASE, json={"config": config})
    assert response.status_code == 200, response.text


def loaded(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/models")
    assert response.status_code == 200, response.text
    models: list[dict[str, Any]] = response.json()["loaded"]
    return models


@pytest.mark.usefixtures("project")
def test_a_model_used_by_a_chat_is_listed_as_loaded(client: TestClient) -> None:
    use_bundled(client, extra_body={"n_ctx": 256, "n_parallel": 2})
    assert loaded(client) == []
    response = chat(client, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert response.status_code == 200, response.text
    (model,) = loaded(client)
    assert (model["model"], model["slots"], model["context"]) == (bundled.CHAT, 2, 256)
    assert model["path"] == str(bundled.chat_path())
    size = bundled.chat_path().stat().st_size
    # the file plus two slots of 256 tokens (30 layers x 3 KV heads x 128 values x 2 bytes)
    assert model["memory_bytes"] == size + 2 * 256 * 30 * 3 * 128 * 2
    assert (model["in_use"], model["keep_loaded"]) == (0, False)
    entries = {m["model_id"]: m for m in client.get("/v1/models").json()["data"]}
    assert entries[bundled.CHAT]["loaded"] is True
    assert entries["all-MiniLM-L6-v2"]["loaded"] is False  # an embedder, not a chat model


@pytest.mark.usefixtures("project")
def test_a_keep_loaded_model_loads_when_the_server_starts(
    client: TestClient, settings: Settings
) -> None:
    use_bundled(client, keep_loaded=True, extra_body={"n_ctx": 128, "n_parallel": 1})
    with TestClient(create_app(settings), raise_server_exceptions=False) as restarted:
        deadline = time.monotonic() + 120
        while not (models := loaded(restarted)) and time.monotonic() < deadline:
            time.sleep(0.1)  # it loads beside the start; the server answers meanwhile
        (model,) = models
        assert (model["context"], model["keep_loaded"]) == (128, True)


@pytest.mark.usefixtures("project")
def test_a_model_over_the_memory_cap_is_a_503_that_says_why(settings: Settings) -> None:
    capped = settings.model_copy(update={"model_memory_gb": 0.05})
    with TestClient(create_app(capped), raise_server_exceptions=False) as client:
        use_bundled(client)
        response = chat(client, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert response.status_code == 503
    assert "more than LF_MODEL_MEMORY_GB allows (51.2MB)" in response.json()["detail"]
