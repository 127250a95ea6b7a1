from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", version_check_url="")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def project(client: TestClient) -> dict[str, object]:
    """A project `acme/bot` made from the default (rag) template."""
    response = client.post("/v1/projects/acme", json={"name": "bot"})
    assert response.status_code == 201, response.text
    project: dict[str, object] = response.json()["project"]
    return project
