from __future__ import annotations

import os

# pytest-xdist's workers inherit COLUMNS=80 from execnet, which the CLI's rich consoles (made at
# import) would keep: the CLI tests set their own width.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from llamafarm.api import create_app
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from tests.postgres import new_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with tests that start real processes (marked slow) first: under `make test`'s two
    xdist workers (one file per worker at a time) the long files then run beside the many short
    ones instead of last, one worker idle."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # TestClient sends `Host: testserver`; the default (loopback names only) is tested in
    # tests/api/test_sites.py.
    return Settings(data_dir=tmp_path / "data", version_check_url="", allowed_hosts=["testserver"])


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def project(client: TestClient) -> dict[str, object]:
    """A project `acme/bot` made from the default (rag) template."""
    response = client.post("/v1/projects/acme", json={"name": "bot"})
    assert response.status_code == 201, response.text
    project: dict[str, object] = response.json()["project"]
    return project


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port (in a thread): its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(settings), log_level="warning")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    served.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateDB]:
    """A state database on SQLite, then on a fresh PostgreSQL database (the same test twice)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    state = StateDB(url)
    yield state
    state.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    with new_database() as url:
        yield url


@pytest.fixture
def postgres_state(postgres_url: str) -> Iterator[StateDB]:
    """A state database on a new PostgreSQL database (migrated): where the BM25 index of
    stores on a Chroma server lives."""
    state = StateDB(postgres_url)
    yield state
    state.close()


@pytest.fixture(scope="session")
def chroma_url(chroma_server: tuple[str, int]) -> str:
    """The session's Chroma server as `LF_CHROMA_URL` takes it."""
    host, port = chroma_server
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One `chroma run` (the chromadb wheel's server) for the session: its host and port."""
    program = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("chroma-server")
    command = [program, "run", "--path", str(folder / "data"), "--host", "127.0.0.1"]
    with (folder / "log").open("w") as log:
        server = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not start: {(folder / 'log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        server.terminate()
        server.wait(timeout=30)
