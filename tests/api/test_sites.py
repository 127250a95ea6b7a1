"""Host and Origin checks on every route: DNS rebinding and pages of other sites get nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.api.sites import allowed_hosts
from llamafarm.settings import Settings

EVIL = {"Origin": "http://evil.example"}
UPLOAD = "/v1/projects/acme/bot/datasets/documents/data"


def test_by_default_only_loopback_names_are_served(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", version_check_url="")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        refused = client.get("/health/liveness")  # TestClient sends `Host: testserver`
        assert refused.status_code == 421
        assert "testserver" in refused.json()["detail"]
        for host in ("localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST"):
            assert client.get("/health/liveness", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_rebinding_host_gets_nothing(client: TestClient, method: str) -> None:
    headers = {"Host": "attacker.example:8000"}
    response = client.request(method, "/v1/projects/acme", headers=headers, json={"name": "x"})
    assert response.status_code == 421
    assert response.json() == {
        "detail": "Host 'attacker.example:8000' is not a name this server answers to "
        "(the operator can add it to LF_ALLOWED_HOSTS)"
    }
    assert client.get("/v1/projects/acme").json()["total"] == 0
    assert client.get("/mcp", headers=headers).status_code == 421


def test_allowed_hosts_add_names_and_the_bound_address() -> None:
    assert allowed_hosts(Settings(allowed_hosts="lf.example, Box.Local:8000")) == {
        "localhost",
        "127.0.0.1",
        "[::1]",
        "lf.example",
        "box.local",
    }
    assert "192.168.1.5" in (allowed_hosts(Settings(host="192.168.1.5")) or ())
    assert "[fd00::5]" in (allowed_hosts(Settings(host="fd00::5")) or ())
    assert allowed_hosts(Settings(host="0.0.0.0")) == {"localhost", "127.0.0.1", "[::1]"}
    assert allowed_hosts(Settings(allowed_hosts="*")) is None


def test_any_host_when_the_operator_says_so(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", version_check_url="", allowed_hosts=["*"])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = {"Host": "llamafarm.internal"}
        assert client.get("/health/liveness", headers=headers).status_code == 200


def test_a_form_post_from_another_site_changes_nothing(client: TestClient) -> None:
    response = client.post("/v1/projects/acme", data={"name": "bot"}, headers=EVIL)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Requests from the page at 'http://evil.example' are not allowed"
    }
    assert client.get("/v1/projects/acme").json()["total"] == 0


@pytest.mark.usefixtures("project")
def test_a_multipart_upload_from_another_site_changes_nothing(client: TestClient) -> None:
    files = {"file": ("evil.txt", b"planted")}
    for origin in ("http://evil.example", "null", "http://localhost.evil.example"):
        response = client.post(UPLOAD, files=files, headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert origin in response.json()["detail"]
    datasets = client.get("/v1/projects/acme/bot/datasets").json()["datasets"]
    assert [d["files"] for d in datasets] == [[]]
    for method in ("PUT", "PATCH", "DELETE"):
        response = client.request(method, "/v1/projects/acme/bot", headers=EVIL)
        assert response.status_code == 403, method
    assert client.get("/v1/projects/acme/bot").status_code == 200


def test_local_pages_listed_origins_and_the_servers_own_pages_may_write(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        allowed_hosts=["testserver"],
        cors_origins=["https://app.example"],
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        origins = [
            "http://localhost:5173",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "https://app.example",
            "http://testserver",  # same origin as the Host it is served under
        ]
        for i, origin in enumerate(origins):
            response = client.post(
                "/v1/projects/acme", json={"name": f"p{i}"}, headers={"Origin": origin}
            )
            assert response.status_code == 201, (origin, response.text)
        assert client.get("/v1/projects/acme").json()["total"] == len(origins)


def test_reads_from_another_site_get_no_cors_headers(client: TestClient) -> None:
    response = client.get("/v1/projects/acme", headers=EVIL)
    assert response.status_code == 200  # the browser keeps the answer from the page
    assert "access-control-allow-origin" not in response.headers


def test_preflight_refusals_are_json(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"}
    refused = client.options("/v1/projects/acme", headers={**preflight, **EVIL})
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Requests from the page at 'http://evil.example' are not allowed"
    }
    local = {**preflight, "Origin": "http://localhost:5173"}
    allowed = client.options("/v1/projects/acme", headers=local)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize(
    "host", ["localhost:80@evil.example", "[::1]evil.example", "127.0.0.1:x", "localhost:"]
)
def test_only_a_numeric_port_is_taken_off_a_host(client: TestClient, host: str) -> None:
    response = client.get("/v1/projects/acme", headers={"Host": host})
    assert response.status_code == 421, response.text
    origin = {"Origin": f"http://{host}"}
    assert client.post("/v1/projects/acme", json={"name": "x"}, headers=origin).status_code == 403
    assert client.get("/v1/projects/acme").json()["total"] == 0


def test_two_host_headers_are_refused(client: TestClient) -> None:
    """The check would read one and the app's URLs the other."""
    for hosts in (["attacker.example", "localhost"], ["localhost", "attacker.example"]):
        headers = [("Host", hosts[0]), ("Host", hosts[1])]
        response = client.post("/v1/projects/acme", json={"name": "x"}, headers=headers)
        assert response.status_code == 400, hosts
        assert response.json() == {"detail": "A request may carry one Host header"}
    assert client.get("/v1/projects/acme").json()["total"] == 0
