"""The Designer's shell and files: who gets them, with which headers, without a key; and the
config editor's two routes (validate without saving, the previous version)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.settings import Settings

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_root_is_json_for_api_clients_and_the_shell_for_browsers(client: TestClient) -> None:
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        answer = client.get("/", headers=accept)
        assert answer.json() == {"message": "Hello, World!"}
    shell = client.get("/", headers=HTML)
    assert shell.status_code == 200
    assert shell.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/js/app.js">' in shell.text
    csp = shell.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "connect-src 'self'"):
        assert directive in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert shell.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/ui/js/app.js", "text/javascript"),
        ("/ui/vendor/js-yaml.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ],
)
def test_the_files_carry_their_type_and_the_policy(
    client: TestClient, path: str, kind: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(kind)
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_missing_file_is_a_404_with_a_detail(client: TestClient) -> None:
    answer = client.get("/ui/nope.js")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not Found"}


def test_with_keys_only_the_shell_and_its_files_need_none(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        allowed_hosts=["testserver"],
        require_auth=True,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/", headers=HTML).status_code == 200
        assert client.get("/ui/js/app.js").status_code == 200
        assert client.head("/ui/style.css").status_code == 200
        # The JSON root, a write under /ui/ and every API route still need a key.
        assert client.get("/").status_code == 401
        assert client.post("/ui/js/app.js").status_code == 401
        assert client.get("/v1/projects/default", headers=HTML).status_code == 401
        assert client.get("/v1/models", headers=HTML).status_code == 401
        # A path under /ui/ reaches only the files: never an API route by `..`.
        sneaky = client.get("/ui/%2e%2e/v1/projects/default")
        assert sneaky.status_code == 404
        assert "projects" not in sneaky.text


def test_host_checks_apply_to_the_shell(client: TestClient) -> None:
    assert client.get("/", headers={**HTML, "Host": "evil.example"}).status_code == 421
    assert client.get("/ui/js/app.js", headers={"Host": "evil.example"}).status_code == 421


def test_validate_checks_without_writing(client: TestClient, project: dict[str, object]) -> None:
    config = dict(project["config"])  # type: ignore[call-overload]
    path = "/v1/projects/acme/bot"
    ok = client.post(f"{path}/config/validate", json={"config": config})
    assert ok.json() == {"valid": True, "warnings": []}

    broken = {**config, "runtime": {"models": [{"name": "m", "provider": "nope", "model": "x"}]}}
    refused = client.post(f"{path}/config/validate", json={"config": broken})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("Invalid config: runtime.models[0].provider: ")
    renamed = client.post(f"{path}/config/validate", json={"config": {**config, "name": "other"}})
    assert renamed.status_code == 400
    assert "cannot be renamed" in renamed.json()["detail"]
    assert client.get(path).json()["project"]["config"] == config  # nothing written
    assert (
        client.post("/v1/projects/acme/nope/config/validate", json={"config": config}).status_code
        == 404
    )


def test_previous_is_the_config_before_the_last_update(
    client: TestClient, project: dict[str, object]
) -> None:
    path = "/v1/projects/acme/bot"
    none = client.get(f"{path}/config/previous")
    assert none.status_code == 404
    assert none.json() == {"detail": "Project acme/bot has no previous config version"}
    first = dict(project["config"])  # type: ignore[call-overload]
    changed = copy.deepcopy(first)
    changed["prompts"][0]["messages"][0]["content"] = "Answer in one sentence."
    assert client.put(path, json={"config": changed}).status_code == 200
    assert client.get(f"{path}/config/previous").json() == {"config": first}
    # Undo: send it back; the previous version is now the changed one.
    assert client.put(path, json={"config": first}).status_code == 200
    assert client.get(f"{path}/config/previous").json() == {"config": changed}
