"""`lf keys` on the state database, and `lf start` refusing a network address without keys."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llamafarm.api import create_app
from llamafarm.cli.client import CliError
from llamafarm.cli.main import app, check_exposure
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from llamafarm.state.keys import PREFIX, create_key, hash_key, load_grants, revoke_key
from llamafarm.state.tables import ApiKey
from tests.e2e.conftest import LF


def lf(data_dir: Path, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.exception


def test_create_list_revoke(tmp_path: Path) -> None:
    code, output, _ = lf(tmp_path, "keys", "create", "--namespace", "acme", "--read-only", "ci")
    assert code == 0
    key = output.strip()
    assert key.startswith(PREFIX) and len(key) > 40

    db = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    with db.session() as session:
        row = session.query(ApiKey).one()
        assert (row.name, row.namespace, row.read_only) == ("ci", "acme", True)
        assert row.key_hash == hash_key(key) and key not in (row.key_hash, row.hint)
    grant = load_grants(db)[hash_key(key)]
    assert (grant.name, grant.namespace, grant.read_only) == ("ci", "acme", True)

    code, output, _ = lf(tmp_path, "keys", "list")
    assert code == 0 and "ci" in output and "acme" in output and "read-only" in output
    assert key not in output and key[:7] in output

    code, _, error = lf(tmp_path, "keys", "create", "ci")
    assert isinstance(error, CliError) and "already exists" in str(error)

    code, output, _ = lf(tmp_path, "keys", "revoke", "ci")
    assert code == 0 and load_grants(db) == {}
    code, _, error = lf(tmp_path, "keys", "revoke", "ci")
    assert isinstance(error, CliError) and "No key named 'ci'" in str(error)
    db.close()


def test_start_refuses_a_network_address_without_keys(tmp_path: Path) -> None:
    env = {**os.environ, "LF_VERSION_CHECK_URL": "", "LF_EMBEDDED_WORKER": "false"}
    env.pop("LF_REQUIRE_AUTH", None)
    result = subprocess.run(
        [LF, "start", "--host", "0.0.0.0", "--port", "1", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Refusing to listen on '0.0.0.0' without API keys" in " ".join(result.stderr.split())


@pytest.fixture
def key(settings: Settings) -> str:
    """A key for namespace acme, made before the server (`live_server`) starts."""
    db = StateDB(settings.state_url)
    made = create_key(db, name="cli", namespace="acme")
    db.close()
    return made


@pytest.mark.slow
def test_the_cli_sends_lf_api_key(key: str, live_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "LF_SERVER_URL": live_server}
    env.pop("LF_API_KEY", None)

    def lf_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LF, *args], env=env, cwd=tmp_path, capture_output=True, text=True)

    refused = lf_run("projects", "list", "acme")
    assert refused.returncode == 1
    assert "Error 401: An API key is required" in " ".join(refused.stderr.split())
    env["LF_API_KEY"] = key
    made = lf_run("init", "--namespace", "acme", "bot")
    assert made.returncode == 0, made.stderr
    listed = lf_run("projects", "list", "acme")
    assert listed.returncode == 0 and "bot" in listed.stdout
    hidden = lf_run("projects", "list", "other")
    assert hidden.returncode == 1 and "Error 404" in hidden.stderr


def test_lf_mcp_shows_where_the_key_goes_not_the_key() -> None:
    result = CliRunner().invoke(app, ["mcp"], env={"LF_API_KEY": "lf_secret"})
    assert result.exit_code == 0
    assert '"Authorization": "Bearer <your LF_API_KEY>"' in result.stdout
    assert '"LF_API_KEY": "<your LF_API_KEY>"' in result.stdout
    assert "lf_secret" not in result.stdout


def test_a_network_server_still_needs_a_key_once_the_last_is_revoked(tmp_path: Path) -> None:
    """Seen before: keys were counted once, at start; revoking the last one while serving
    0.0.0.0 opened the whole API to the network."""
    settings = Settings(
        data_dir=tmp_path, host="0.0.0.0", version_check_url="", allowed_hosts=["testserver"]
    )
    db = StateDB(settings.state_url)
    key = create_key(db, name="only")
    served = check_exposure(settings)
    assert served.require_auth and not settings.require_auth
    with TestClient(create_app(served)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/projects/acme", headers=headers).status_code == 200
        revoke_key(db, "only")
        deadline = time.monotonic() + 30
        while client.get("/v1/projects/acme", headers=headers).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.2)
        assert client.get("/v1/projects/acme").status_code == 401
    db.close()
