"""The commands LlamaFarm users reach for, against a real server (uvicorn on a loopback port);
`--server-url` is written after the subcommand throughout, as they write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import hoist_global_options
from llamafarm.cli.main import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "LF_API_KEY": ""}


def lf(url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--server-url", url], input=stdin, env=ENV)
    return result.exit_code, result.output


@pytest.fixture
def server(live_server: str) -> str:
    """The live server with a project acme/bot from the default (rag) template."""
    response = httpx.post(f"{live_server}/v1/projects/acme", json={"name": "bot"})
    assert response.status_code == 201, response.text
    return live_server


def test_global_options_move_to_the_front_except_after_a_double_dash() -> None:
    assert hoist_global_options(["projects", "list", "--server-url", "http://x", "acme"]) == [
        "--server-url",
        "http://x",
        "projects",
        "list",
        "acme",
    ]
    assert hoist_global_options(["chat", "--server-url=http://x", "--", "--server-url"]) == [
        "--server-url=http://x",
        "chat",
        "--",
        "--server-url",
    ]


def test_datasets_create_uploads_a_folder_by_the_strategys_parsers(
    server: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    (docs / "deep" / "deeper").mkdir(parents=True)
    (docs / ".git").mkdir()
    (docs / "a.txt").write_text("Llamas hum when they are curious.")
    (docs / "deep" / "b.md").write_text("# Alpacas\n\nThey are smaller than llamas.")
    (docs / "deep" / "deeper" / "c.txt").write_text("Guard llamas protect sheep.")
    (docs / "deep" / "tool.exe").write_bytes(b"\x00binary")  # no parser of the strategy
    (docs / ".git" / "config.txt").write_text("hidden")
    single = tmp_path / "notes.txt"
    single.write_text("A llama's wool is called fiber.")

    code, output = lf(
        server, "datasets", "create", "-p", "acme/bot", "docs", str(docs), str(single)
    )
    assert code == 0, output
    assert "Created dataset docs" in output
    assert "Uploaded 4 of 4 file(s) to docs" in output
    assert "1 file(s) no parser of the dataset handles were left out" in output
    body = httpx.get(f"{server}/v1/projects/acme/bot/datasets").json()
    [dataset] = [d for d in body["datasets"] if d["name"] == "docs"]
    names = {f["original_filename"] for f in dataset["details"]["file_details"]}
    assert names == {"a.txt", "b.md", "c.txt", "notes.txt"}


def test_projects_delete_asks_unless_yes(server: str) -> None:
    code, output = lf(server, "projects", "delete", "acme/bot", stdin="n\n")
    assert code == 1 and "Aborted" in output
    assert httpx.get(f"{server}/v1/projects/acme/bot").status_code == 200
    code, output = lf(server, "projects", "delete", "acme/bot", "--yes")
    assert code == 0 and "Deleted project acme/bot" in output
    assert httpx.get(f"{server}/v1/projects/acme/bot").status_code == 404
    code, output = lf(server, "projects", "delete", "acme/bot", "-y")
    assert code == 1


def test_services_status_shows_each_component(server: str) -> None:
    code, output = lf(server, "services", "status")
    assert code == 0, output
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if "│" in line}
    assert "healthy" in rows["server"] and "healthy" in rows["state database"]
    assert "degraded" in rows["ingestion worker"]  # none runs beside this server
    assert "filesystem broker" in rows["task broker"]
    assert "llama.cpp" in rows["model server"]
    code, output = lf("http://127.0.0.1:9", "services", "status")
    assert code == 1 and "unreachable" in output


def test_chat_sends_the_file_and_the_rag_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request the server receives (its handling of each field is tested in tests/api)."""
    sent: list[dict[str, Any]] = []

    def events(self: ApiClient, path: str, *, json_body: Any, headers: dict[str, str]) -> Any:
        sent.append({"url": self.base_url + path, **json_body})
        yield {}, {"choices": [{"delta": {"content": "Hello."}}]}
        yield {}, {"choices": [{"delta": {}, "finish_reason": "stop"}]}

    monkeypatch.setattr(ApiClient, "events", events)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("What do llamas eat?\nAnswer briefly.")
    code, output = lf(
        "http://lf.test",
        "chat",
        "acme/bot",
        "-f",
        str(prompt),
        "--retrieval-strategy",
        "basic",
        "--rag-top-k",
        "3",
        "--rag-score-threshold",
        "0.2",
    )
    assert code == 0, output
    assert "Hello." in output
    [body] = sent
    assert body["url"] == "http://lf.test/v1/projects/acme/bot/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "What do llamas eat?\nAnswer briefly."}]
    assert (body["rag_retrieval_strategy"], body["rag_top_k"], body["rag_score_threshold"]) == (
        "basic",
        3,
        0.2,
    )
    code, output = lf("http://lf.test", "chat", "-f", str(prompt), "a message too")
    assert code == 1 and len(sent) == 1


def test_projects_apply_creates_then_replaces_a_project_from_a_llamafarm_file(
    live_server: str, tmp_path: Path
) -> None:
    fixture = Path(__file__).parent.parent / "fixtures" / "llamafarm" / "voice.yaml"
    file = tmp_path / "llamafarm.yaml"
    file.write_text(fixture.read_text())

    code, output = lf(live_server, "projects", "apply", str(file))
    assert code == 0, output
    assert "Created project acme/bot" in output
    assert "warning: voice: voice chat is not supported" in output
    stored = httpx.get(f"{live_server}/v1/projects/acme/bot").json()["project"]["config"]
    assert stored["voice"] == yaml.safe_load(fixture.read_text())["voice"]

    code, output = lf(live_server, "projects", "apply", str(file))
    assert code == 0 and "Updated project acme/bot" in output, output

    # A file the server refuses leaves no project behind.
    refused_config = yaml.safe_load(fixture.read_text()) | {"name": "other", "colour": "blue"}
    file.write_text(yaml.safe_dump(refused_config))
    refused = CliRunner().invoke(
        app, ["projects", "apply", str(file), "--server-url", live_server], env=ENV
    )
    assert isinstance(refused.exception, CliError)
    assert "colour: unknown key" in str(refused.exception)
    assert httpx.get(f"{live_server}/v1/projects/acme/other").status_code == 404
