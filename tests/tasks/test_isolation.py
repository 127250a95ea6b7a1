"""Untrusted files in one task: a zip bomb and a parser that never ends fail alone, each with an
error that names its limit, in the file's task entry and event; the good file is stored."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llamafarm.ingest.parsers import PARSERS
from llamafarm.ingest.sandbox import ParseLimits, ParsePool
from llamafarm.state import TaskFile
from llamafarm.tasks.processing import WorkerContext, run_file
from tests.api.test_rag import BASE
from tests.ingest.sandbox_parsers import LoopParser

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def loop_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """`LoopParser` known by name for this test only."""
    monkeypatch.setitem(PARSERS._items, "LoopParser", LoopParser)


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    sandbox = ParsePool(
        ParseLimits(processes=2, timeout_s=2, max_mb=512, max_unzipped_mb=1024, max_zip_ratio=100)
    )
    yield sandbox
    sandbox.close()


def zip_bomb() -> bytes:
    """A real DOCX whose document part is 40 MiB of one repeated byte (40 KiB packed)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(FIXTURES / "handbook-1p.docx") as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for item in source.infolist():
            if item.filename != "word/document.xml":
                bomb.writestr(item, source.read(item))
        bomb.writestr("word/document.xml", b"a" * (40 << 20))
    return buffer.getvalue()


@pytest.mark.usefixtures("project", "loop_parser")
def test_bad_files_fail_alone_naming_their_limit(client: TestClient, pool: ParsePool) -> None:
    config = client.get(BASE).json()["project"]["config"]
    strategy = config["rag"]["data_processing_strategies"][0]
    strategy["parsers"].insert(0, {"type": "LoopParser", "file_include_patterns": ["*.loop"]})
    assert client.put(BASE, json={"config": config}).status_code == 200

    files = {
        "bomb.docx": zip_bomb(),
        "spin.loop": b"anything",
        "orchard.txt": b"Apple trees blossom in spring and bear fruit in autumn.",
    }
    for name, content in files.items():
        response = client.post(f"{BASE}/datasets/documents/data", files={"file": (name, content)})
        assert response.status_code == 200, response.text
    task = client.post(f"{BASE}/datasets/documents/actions", json={"action_type": "process"})
    assert task.status_code == 202, task.text
    state = client.app.state  # type: ignore[attr-defined]
    context = WorkerContext(db=state.db, projects=state.projects, worker="test", parsing=pool)
    with state.db.session() as session:
        ids = session.scalars(select(TaskFile.id).order_by(TaskFile.id)).all()
    assert [run_file(context, file_id) for file_id in ids] == ["FAILURE", "FAILURE", "SUCCESS"]

    body = client.get(f"{BASE}/tasks/{task.json()['task_id']}").json()
    details = {f["filename"]: f for f in body["result"]["details"]}
    assert details["bomb.docx"]["error_type"] == "ParseLimitExceeded"
    assert "over LF_PARSE_MAX_ZIP_RATIO (100)" in details["bomb.docx"]["error"]
    assert details["spin.loop"]["error_type"] == "ParseLimitExceeded"
    assert "after LF_PARSE_TIMEOUT_S (2 s)" in details["spin.loop"]["error"]
    assert details["orchard.txt"]["state"] == "SUCCESS" and details["orchard.txt"]["chunks"] == 1

    events = client.get(f"{BASE}/event_logs", params={"type": "rag_processing"}).json()["events"]
    errors = {e["summary"]["file"]: e["summary"]["error"] for e in events}
    assert "LF_PARSE_TIMEOUT_S" in errors["spin.loop"] and errors["orchard.txt"] is None
