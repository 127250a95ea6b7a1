"""What the benchmarks that start a real `lf start` share: a free port, waiting for it, and
running a task to its end."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(http: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server answers and its worker is ready: start-up work would skew the timings."""
    for _ in range(600):
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"lf start exited with {server.returncode}; {log}:\n{tail}")
        try:
            components = http.get("/health").json()["components"]
            if any(c["name"] == "worker" and c["status"] == "healthy" for c in components):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server or its worker was not up within 2 minutes; see {log}")


PROCESS = ("/datasets/documents/actions", {"action_type": "process"})
"""The request that processes the bench project's `documents` dataset."""


def run_task(
    http: httpx.Client, base: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST `base + path` (what starts a task: a dataset's process, a reindex), then poll the
    task until it ends; the task as it ended."""
    task_id = http.post(f"{base}{path}", json=body).json()["task_id"]
    while (task := http.get(f"{base}/tasks/{task_id}").json())["state"] not in (
        "SUCCESS",
        "FAILURE",
        "REVOKED",
    ):
        time.sleep(0.2)
    result: dict[str, Any] = task
    return result
