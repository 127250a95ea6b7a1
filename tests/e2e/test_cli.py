"""The real server (`lf start` in a subprocess) driven by the real `lf` CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow

LF = str(Path(sys.executable).parent / "lf")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("data")
    port = _free_port()
    env = {**os.environ, "LF_VERSION_CHECK_URL": ""}
    process = subprocess.Popen(
        [LF, "start", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health/liveness").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0].decode(errors="replace")
            pytest.fail(f"lf start did not come up:\n{output}")
        time.sleep(0.2)
    yield url, data_dir
    process.terminate()
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()


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
