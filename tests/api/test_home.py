"""The server writes under its data dir only: ingest, query and chat leave a fresh HOME empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOWS = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from llamafarm.api import create_app
from llamafarm.settings import Settings
from tests.api.test_chat import ASK, use
from tests.api.test_rag import BASE, FILES, ingest
from tests.chat.openai_server import OpenAIServer

settings = Settings(data_dir=Path(sys.argv[1]), version_check_url="", allowed_hosts=["testserver"])
with TestClient(create_app(settings)) as client, OpenAIServer(text="Ice melts.") as fake:
    assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
    ingest(client, FILES)
    query = {"query": "glaciers", "retrieval_strategy": "hybrid"}
    assert client.post(f"{BASE}/rag/query", json=query).status_code == 200
    use(client, fake)
    chat = client.post(f"{BASE}/chat/completions", json={"messages": ASK})
    assert chat.status_code == 200, chat.text
    assert "Ice melts." in chat.text
"""


def test_nothing_is_written_outside_the_data_dir(tmp_path: Path) -> None:
    """Seen before: onnxruntime wrote ~/.cache/Microsoft/DeveloperTools/.onnxruntime/."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the server turns it off itself
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", FLOWS, str(tmp_path / "data")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
