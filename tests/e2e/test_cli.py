"""The real server (`lf start` in a subprocess) driven by the real `lf` CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import LF

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(start_server: Any) -> tuple[str, Path]:
    started = start_server(LF_EMBEDDED_WORKER="false")
    return started.url, started.data_dir


def lf(url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [LF, "--server-url", url, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_list_show(server: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = server
    result = lf(url, "init", "--namespace", "acme", "--template", "server", "chatbot", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Created project acme/chatbot" in result.stdout
    local = yaml.safe_load((tmp_path / "llamafarm.yaml").read_text())
    stored = yaml.safe_load((data_dir / "projects/acme/chatbot/llamafarm.yaml").read_text())
    assert local == stored
    assert (local["name"], local["namespace"]) == ("chatbot", "acme")

    listing = lf(url, "projects", "list", "acme")
    assert listing.returncode == 0, listing.stderr
    assert "chatbot" in listing.stdout
    assert "universal:SmolLM2-135M-Instruct" in listing.stdout

    shown = lf(url, "projects", "show", "acme/chatbot")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout.split("\n", 1)[1]) == stored


def test_init_refuses_to_overwrite_a_local_config(server: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = server
    (tmp_path / "llamafarm.yaml").write_text("mine: true\n")
    result = lf(url, "init", "other", cwd=tmp_path)
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert (tmp_path / "llamafarm.yaml").read_text() == "mine: true\n"
    assert not (data_dir / "projects/default/other").exists()


def test_failing_commands_exit_non_zero_with_the_server_detail(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = server
    missing = lf(url, "projects", "show", "acme/nope")
    assert missing.returncode == 1
    assert "Error 404: Project acme/nope not found" in missing.stderr

    bad_name = lf(url, "init", "../evil", cwd=tmp_path)
    assert bad_name.returncode == 1
    assert "Error 400: Invalid project name '../evil'" in bad_name.stderr

    duplicate = lf(url, "init", "--namespace", "acme", "chatbot", cwd=tmp_path)
    assert duplicate.returncode == 1
    assert "Error 409: Project acme/chatbot already exists" in duplicate.stderr

    unreachable = lf("http://127.0.0.1:9", "projects", "list")
    assert unreachable.returncode == 1
    assert "Cannot reach the llamafarm server" in unreachable.stderr


def test_version(server: tuple[str, Path]) -> None:
    url, data_dir = server
    result = lf(url, "version")
    assert result.returncode == 0
    assert f"(data: {data_dir})" in result.stdout


def test_datasets_upload_process_list_and_tasks(start_server: Any, tmp_path: Path) -> None:
    url = start_server().url  # with its ingestion worker
    assert lf(url, "init", "kb", cwd=tmp_path).returncode == 0
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Alpine glaciers retreat every summer.\n\nSnow returns in autumn.")
    (docs / "b.md").write_text("# Rivers\n\nRivers carry sediment to the delta.")

    uploaded = lf(
        url, "datasets", "upload", "documents", str(docs / "*"), "--process", cwd=tmp_path
    )
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert "Uploaded 2 of 2 file(s) to documents" in uploaded.stdout
    assert "SUCCESS" in uploaded.stdout
    task_id = uploaded.stdout.split("task ", 1)[1].split()[0]

    listed = lf(url, "datasets", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "documents" in listed.stdout and "2/2" in listed.stdout

    shown = lf(url, "tasks", "show", task_id, "--project", "default/kb")
    assert shown.returncode == 0, shown.stderr
    assert "a.txt" in shown.stdout and "b.md" in shown.stdout

    found = lf(url, "rag", "query", "How do glaciers change in summer?", "-k", "1", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "1 result(s) from main_db" in found.stdout
    assert "a.txt" in found.stdout and "glaciers retreat" in found.stdout
    only = lf(url, "rag", "query", "glaciers", "--filter", "source=b.md", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert "b.md" in only.stdout and "a.txt" not in only.stdout
    unknown = lf(url, "rag", "query", "glaciers", "--strategy", "nope", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "Unknown retrieval_strategy 'nope'" in unknown.stderr
    health = lf(url, "rag", "health", cwd=tmp_path)
    assert health.returncode == 0, health.stderr
    assert "main_db: healthy" in health.stdout and "embeddings" in health.stdout
    databases = lf(url, "rag", "databases", cwd=tmp_path)
    assert databases.returncode == 0, databases.stderr
    assert "main_db" in databases.stdout and "hybrid_search (default)" in databases.stdout

    # A broken file makes `process` exit non-zero, naming the file's error.
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    failed = lf(
        url, "datasets", "upload", "documents", str(docs / "broken.pdf"), "--process", cwd=tmp_path
    )
    assert failed.returncode == 1
    assert "FAILURE" in failed.stdout and "broken.pdf" in failed.stdout

    missing = lf(url, "datasets", "upload", "documents", str(docs / "nope.txt"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "No such file" in missing.stderr

    # The worker (another process) logged each processed file: a.txt and b.md, then
    # broken.pdf (a.txt and b.md, stored already, were skipped when queued: no job, no event).
    newest = lf(url, "events", "list", "--type", "rag_processing", "--limit", "2", cwd=tmp_path)
    assert newest.returncode == 0, newest.stderr
    assert "Events 1-2 of 3" in newest.stdout
    page = httpx.get(f"{url}/v1/projects/default/kb/event_logs", params={"limit": 5}).json()
    broken = next(e for e in page["events"] if e["summary"]["file"] == "broken.pdf")
    shown = lf(url, "events", "show", broken["event_id"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "file: broken.pdf" in shown.stdout
    assert "status: FAILURE" in shown.stdout and "parse" in shown.stdout
    unknown_event = lf(url, "events", "show", "evt_nope", cwd=tmp_path)
    assert unknown_event.returncode == 1
    assert "Event 'evt_nope' not found" in unknown_event.stderr
