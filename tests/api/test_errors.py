"""Every error the API gives, walked in one place: each is `{"detail": str}` with its status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.settings import Settings

VALID = {
    "version": "v1",
    "name": "bot",
    "namespace": "acme",
    "runtime": {"provider": "ollama", "model": "m"},
}

CASES: list[tuple[str, str, dict[str, Any], int]] = [
    # (method, path, request kwargs, status)
    ("GET", "/v1/nowhere", {}, 404),
    ("PATCH", "/v1/projects/acme", {}, 405),
    ("GET", "/v1/projects/acme/missing", {}, 404),
    ("PUT", "/v1/projects/acme/missing", {"json": {"config": VALID}}, 404),
    ("DELETE", "/v1/projects/acme/missing", {}, 404),
    ("POST", "/v1/projects/acme", {"json": {"name": "bot"}}, 409),
    ("POST", "/v1/projects/acme", {"json": {"name": "x", "config_template": "nope"}}, 400),
    ("POST", "/v1/projects/acme", {"json": {"name": "../x"}}, 400),
    ("POST", "/v1/projects/acme", {"json": {"name": ""}}, 400),
    ("POST", "/v1/projects/acme", {"json": {"name": "x" * 65}}, 400),
    ("POST", "/v1/projects/acme", {"json": {}}, 422),
    ("POST", "/v1/projects/acme", {"json": {"name": 5}}, 422),
    ("POST", "/v1/projects/acme", {"json": {"name": "x", "template": "rag"}}, 422),
    ("POST", "/v1/projects/acme", {"json": ["name"]}, 422),
    (
        "POST",
        "/v1/projects/acme",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        422,
    ),
    ("GET", "/v1/projects/%2e%2e", {}, 400),
    ("GET", "/v1/projects/%2E%2E/bot", {}, 400),
    ("GET", "/v1/projects/acme/%2e%2e", {}, 400),
    ("GET", "/v1/projects/%2Fetc/passwd", {}, 400),
    ("GET", "/v1/projects/acme%5C..%5Cx", {}, 400),
    ("GET", "/v1/projects/.hidden", {}, 400),
    ("GET", "/v1/projects/" + "x" * 65, {}, 400),
    ("PUT", "/v1/projects/acme/bot", {"json": {"config": {**VALID, "extra": 1}}}, 422),
    ("PUT", "/v1/projects/acme/bot", {"json": {"config": {**VALID, "name": "other"}}}, 400),
    ("PUT", "/v1/projects/acme/bot", {"json": {"config": "yaml text"}}, 422),
    ("PUT", "/v1/projects/acme/bot", {"json": {}}, 422),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), CASES)
def test_error_shape(
    client: TestClient,
    project: dict[str, Any],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"]
    assert isinstance(body["detail"], str) and body["detail"]


def test_unexpected_errors_are_500_with_the_same_shape(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}


def test_a_chunked_upload_over_the_limit_is_refused_as_it_streams(settings: Settings) -> None:
    boundary = "llamafarm-test-boundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        for _ in range(48):  # 3 MiB, no Content-Length: sent chunked
            yield b"x" * (64 << 10)
        yield f"\r\n--{boundary}--\r\n".encode()

    app = create_app(settings.model_copy(update={"max_upload_mb": 1}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.post("/v1/projects/acme", json={"name": "bot"})
        response = test_client.post(
            "/v1/projects/acme/bot/datasets/documents/data",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        listing = test_client.get("/v1/projects/acme/bot/datasets").json()
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than the 1 MiB limit"}
    assert listing["datasets"][0]["files"] == []
