"""A real `lf start` on a free port, for tests that need real HTTP and a real worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

LF = str(Path(sys.executable).parent / "lf")


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Ctrl-C, as a user would; the server stops its worker on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch(tmp_path_factory: pytest.TempPathFactory, *args: str, **env: str) -> Server:
    """A running `lf start` on a free port with a new data dir (args: more `lf start` options,
    env: more environment); the caller stops it."""
    data_dir = tmp_path_factory.mktemp("data")
    port = free_port()
    log = data_dir.parent / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                LF,
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            env={**os.environ, "LF_VERSION_CHECK_URL": "", **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", data_dir, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.url}/health/liveness").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"lf start did not come up:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type[Server]]:
    """Call `start_server(*args, **env)` to get a running Server (args: more `lf start`
    options); all are stopped after the module."""
    started: list[Server] = []

    def start(*args: str, **env: str) -> Server:
        server = launch(tmp_path_factory, *args, **env)
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        server.stop()
