from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm import __version__
from llamafarm.api import create_app
from llamafarm.settings import Settings
from llamafarm.state import WorkerHeartbeat
from llamafarm.state.heartbeats import beat
from llamafarm.system.health import broker_check, check_components, data_dir_check, overall


def test_root_and_info(client: TestClient, settings: Settings) -> None:
    assert client.get("/").json() == {"message": "Hello, World!"}
    assert client.get("/info").json() == {
        "version": __version__,
        "data_directory": str(settings.data_dir),
    }


def test_liveness(client: TestClient) -> None:
    assert client.get("/health/liveness").json() == {"status": "alive"}


def test_health_lists_components(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    # No ingestion worker runs beside the in-process app: uploads work, processing waits.
    assert body["status"] == "degraded"
    assert body["services"] == {
        "api": "healthy",
        "data_dir": "healthy",
        "state_db": "healthy",
        "worker": "degraded",
        "broker": "healthy",
        "model_server": "healthy",
    }
    for component in body["components"]:
        assert component["latency_ms"] >= 0
        assert component["message"]


def test_health_is_healthy_with_a_live_worker(client: TestClient) -> None:
    beat(client.app.state.db, f"{socket.gethostname()}:{os.getpid()}")  # type: ignore[attr-defined]
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    worker = next(c for c in body["components"] if c["name"] == "worker")
    assert worker["message"] == "1 worker(s) alive"


def test_an_unreachable_redis_broker_is_unhealthy(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a port nothing listens on
    port = sock.getsockname()[1]
    check = broker_check(f"redis://127.0.0.1:{port}/0", tmp_path)
    [component] = asyncio.run(check_components({"broker": check}, timeout=30))
    sock.close()
    assert component.status == "unhealthy"
    assert "Connection refused" in component.message


def test_a_dead_workers_heartbeat_does_not_count(client: TestClient) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now belongs to no process
    name = f"{socket.gethostname()}:{gone.pid}"
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        session.add(WorkerHeartbeat(worker=name, pid=gone.pid, last_seen=time.time()))
    assert client.get("/health").json()["services"]["worker"] == "degraded"


def test_health_is_unhealthy_when_the_data_dir_is_gone(
    client: TestClient, settings: Settings
) -> None:
    shutil.rmtree(settings.data_dir)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["services"]["data_dir"] == "unhealthy"
    assert body["services"]["api"] == "healthy"


def test_data_dir_nearly_full_is_degraded(tmp_path: Path) -> None:
    status, message = data_dir_check(tmp_path, min_free_bytes=1 << 62)()
    assert status == "degraded"
    assert "MiB free" in message


def test_worst_component_decides_and_slow_checks_time_out() -> None:
    def slow() -> tuple[str, str]:
        time.sleep(1)
        return "healthy", "late"

    checks = {"ok": lambda: ("healthy", "fine"), "meh": lambda: ("degraded", "slow"), "slow": slow}
    components = asyncio.run(check_components(checks, timeout=0.2))  # type: ignore[arg-type]
    by_name = {c.name: c for c in components}
    assert by_name["slow"].status == "unhealthy"
    assert "no answer within 0.2s" in by_name["slow"].message
    assert overall(components) == "unhealthy"
    assert overall(components[:2]) == "degraded"
    assert overall([]) == "healthy"


class _Release(BaseHTTPRequestHandler):
    delay = 0.0
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        time.sleep(self.delay)
        body = json.dumps(
            {
                "tag_name": "v99.0.0",
                "name": "v99.0.0",
                "body": "### Features\n- everything",
                "html_url": "http://127.0.0.1/releases/v99.0.0",
                "published_at": "2026-11-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def release_server() -> Iterator[tuple[str, type[_Release]]]:
    handler = type("Handler", (_Release,), {"hits": 0, "delay": 0.0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/releases/latest", handler
    server.shutdown()
    server.server_close()


def _version_check(settings: Settings, **overrides: object) -> list[dict[str, Any]]:
    app = create_app(settings.model_copy(update=overrides))
    with TestClient(app) as test_client:
        return [test_client.get("/v1/system/version-check").json() for _ in range(2)]


def test_version_check_reads_the_feed_and_caches(
    settings: Settings, release_server: tuple[str, type[_Release]]
) -> None:
    url, handler = release_server
    first, second = _version_check(settings, version_check_url=url)
    assert first["current_version"] == __version__
    assert first["latest_version"] == "99.0.0"
    assert first["update_available"] is True
    assert first["release_notes"] == "### Features\n- everything"
    assert first["error"] is None
    assert first["from_cache"] is False
    assert second == {**first, "from_cache": True}
    assert handler.hits == 1


def test_version_check_times_out_quickly(
    settings: Settings, release_server: tuple[str, type[_Release]]
) -> None:
    url, handler = release_server
    handler.delay = 2.0
    first, second = _version_check(settings, version_check_url=url, version_check_timeout=0.3)
    assert first["latest_version"] is None
    assert first["error"] == "release feed did not answer within 0.3s"
    assert (first["from_cache"], second["from_cache"]) == (False, True)


def test_version_check_when_unreachable_or_disabled(settings: Settings) -> None:
    # Port 9 (discard) is closed on loopback: the connection is refused at once.
    [unreachable, _] = _version_check(settings, version_check_url="http://127.0.0.1:9/latest")
    assert unreachable["current_version"] == __version__
    assert unreachable["error"].startswith("release feed unavailable: ConnectError")
    [disabled, _] = _version_check(settings, version_check_url="")
    assert "disabled" in disabled["error"]
