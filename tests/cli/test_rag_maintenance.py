"""`lf rag stats|list|reindex|export|import|compact|clear` against a real server (uvicorn in
a thread); files processed with the worker's own function in this process."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from llamafarm.cli.main import app
from llamafarm.components import check_components
from llamafarm.projects import ProjectStore
from llamafarm.settings import Settings
from llamafarm.state import StateDB, TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from llamafarm.tasks.reindex import run_reindex

BASE = "/v1/projects/acme/bot"
FILES = {
    "glaciers.md": b"# Glaciers\n\nAlpine glaciers retreat every summer as the ice melts.",
    "orchard.txt": b"Apple trees blossom in spring and bear fruit in autumn.",
}


def lf(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--server-url", url, *args, "--project", "acme/bot"], env={"COLUMNS": "200"}
    )
    # A server's refusal is raised as CliError, which `lf`'s entry point prints.
    return result.exit_code, result.output + str(result.exception or "")


def test_stats_list_reindex_export_import_compact_and_clear(
    live_server: str, settings: Settings, tmp_path: Path
) -> None:
    http = httpx.Client(base_url=live_server, timeout=60)
    assert http.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    hashes = {}
    for name, content in FILES.items():
        uploaded = http.post(f"{BASE}/datasets/documents/data", files={"file": (name, content)})
        hashes[name] = uploaded.json()["hash"]
    assert http.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    db = StateDB(settings.state_url)
    projects = ProjectStore(
        settings.projects_dir, templates_dir=settings.templates_dir, check=check_components
    )
    context = WorkerContext(db=db, projects=projects, worker="test")
    with db.session() as session:
        for file_id in session.scalars(select(TaskFile.id)).all():
            assert run_file(context, file_id) == "SUCCESS"

    code, output = lf(live_server, "rag", "stats")
    assert code == 0, output
    assert "RAG stats of main_db" in output and "all-MiniLM-L6-v2" in output
    assert "needs reindex" in output and "YES" not in output

    code, output = lf(live_server, "rag", "list", "--limit", "1")
    assert code == 0, output
    assert "1 document(s) in main_db" in output and "glaciers.md" in output
    assert "orchard.txt" not in output
    code, output = lf(live_server, "rag", "list", "--offset", "1")
    assert "orchard.txt" in output and "glaciers.md" not in output

    code, output = lf(live_server, "rag", "reindex", "main_db", "--no-wait")
    assert code == 0, output
    task_id = output.split("task ")[1].split()[0]
    assert run_reindex(context, task_id) == "SUCCESS"
    code, output = lf(live_server, "tasks", "show", task_id)
    assert code == 0 and "SUCCESS (2/2)" in output, output
    code, output = lf(live_server, "rag", "reindex", "nope")
    assert code == 1 and "nope" in output

    archive = tmp_path / "main.zip"
    code, output = lf(live_server, "rag", "export", "main_db", "-o", str(archive))
    assert code == 0 and f"Exported main_db to {archive}" in output, output
    code, output = lf(live_server, "rag", "import", "main_db", str(archive))
    assert code == 0 and "Imported 2 chunk(s) into main_db (2 in all)" in output, output
    code, output = lf(live_server, "rag", "import", "main_db", str(tmp_path / "none.zip"))
    assert code == 1 and "No such file" in output
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    code, output = lf(live_server, "rag", "import", "main_db", str(tmp_path / "bad.zip"))
    assert code == 1 and "Error 400" in output
    code, output = lf(live_server, "rag", "compact", "main_db")
    assert code == 0 and "Compacted main_db" in output, output

    code, output = lf(live_server, "rag", "clear", "documents", "--file", hashes["orchard.txt"])
    assert code != 0  # asked for a confirmation, and none came
    code, output = lf(
        live_server, "rag", "clear", "documents", "--file", hashes["orchard.txt"], "--yes"
    )
    assert code == 0, output
    assert "Removed 1 chunk(s)" in output
    code, output = lf(live_server, "rag", "clear", "documents", "--yes")
    assert code == 0, output
    assert "Removed 1 chunk(s) of 1 file(s) of documents" in output
    assert http.get(f"{BASE}/rag/stats").json()["chunk_count"] == 0

    code, output = lf(live_server, "rag", "clear", "nope", "--yes")
    assert code == 1 and "nope" in output
    context.models.close()
    db.close()
    http.close()
