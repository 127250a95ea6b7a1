"""`lf examples` against a real server with its ingestion worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import conftest as e2e
from tests.e2e.test_cli import lf
from tests.examples.builders import QUESTION, write_example

pytestmark = pytest.mark.slow

start_server = e2e.start_server


def test_list_and_import(start_server: Any, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    write_example(examples)
    server = start_server(LF_EXAMPLES_DIR=str(examples))

    listed = lf(server.url, "examples", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "garden" in line)
    for cell in ("The garden example", "2", "B", "rag, garden"):
        assert cell in row

    imported = lf(server.url, "examples", "import", "garden", "--namespace", "acme")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    output = imported.stdout
    assert "Imported example garden as project acme/garden: herbs, tools" in output
    assert output.count("SUCCESS (") == 2
    assert "basil.md" in output and "shears.txt" in output
    assert f'Try: lf chat acme/garden "{QUESTION}"' in output

    found = httpx.post(
        f"{server.url}/v1/projects/acme/garden/rag/query", json={"query": QUESTION, "top_k": 1}
    ).json()
    assert "fourteen hours of light" in found["results"][0]["content"]

    quiet = lf(
        server.url,
        "examples",
        "import",
        "garden",
        "--namespace",
        "acme",
        "--name",
        "later",
        "--no-process",
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "SUCCESS" not in quiet.stdout and "Project: acme/later" in quiet.stdout

    again = lf(server.url, "examples", "import", "garden", "--namespace", "acme")
    assert again.returncode == 1
    assert "Error 409: Project acme/garden already exists" in again.stderr
    unknown = lf(server.url, "examples", "import", "nope")
    assert unknown.returncode == 1
    assert "Error 404: Example 'nope' not found" in unknown.stderr
