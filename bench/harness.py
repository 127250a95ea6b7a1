"""What the benchmarks that start a real `lf start` share: a free port, waiting for it, and
running a task to its end."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil


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


def wait_until_idle(process: psutil.Process, *, window: float = 1.0, busy: float = 0.1) -> float:
    """Until `process` and its children use less than `busy` of a core over `window` seconds
    (at most a minute); the seconds waited. A worker reports healthy at its first heartbeat,
    while it still loads its embedders and starts its parse processes (seconds of CPU): a
    timing begun then counts its start-up."""
    begun = time.perf_counter()

    def cpu() -> float:
        total = 0.0
        for p in (process, *process.children(recursive=True)):
            try:
                times = p.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    last = cpu()
    while time.perf_counter() - begun < 60:
        time.sleep(window)
        now = cpu()
        if now - last < busy * window:
            break
        last = now
    return time.perf_counter() - begun


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
