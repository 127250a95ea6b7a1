"""Component health: each check is timed, run concurrently, and the worst status decides."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from llamafarm.state import StateDB
from llamafarm.state.heartbeats import live_workers

Status = Literal["healthy", "degraded", "unhealthy"]
Check = Callable[[], tuple[Status, str]]
"""A blocking function that returns a status and a message; raising means unhealthy."""

_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: Status
    latency_ms: float
    message: str


async def check_components(checks: dict[str, Check], *, timeout: float) -> list[ComponentHealth]:
    return list(await asyncio.gather(*(_run(name, c, timeout) for name, c in checks.items())))


async def _run(name: str, check: Check, timeout: float) -> ComponentHealth:
    started = time.perf_counter()
    try:
        status, message = await asyncio.wait_for(asyncio.to_thread(check), timeout)
    except TimeoutError:
        status, message = "unhealthy", f"no answer within {timeout:g}s"
    except Exception as exc:
        status, message = "unhealthy", f"{type(exc).__name__}: {exc}"
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(name, status, latency, message)


def overall(components: list[ComponentHealth]) -> Status:
    return max((c.status for c in components), key=_RANK.__getitem__, default="healthy")


@dataclass(frozen=True)
class HealthReport:
    """The /health answer: the overall status, each component's, and when it was taken."""

    status: Status
    components: list[ComponentHealth]
    timestamp: str

    @property
    def services(self) -> dict[str, Status]:
        """Each component's status by name, as in the reference's `services` map."""
        return {c.name: c.status for c in self.components}


def report(components: list[ComponentHealth]) -> HealthReport:
    return HealthReport(
        status=overall(components),
        components=components,
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def api_check() -> tuple[Status, str]:
    return "healthy", "serving requests"


def data_dir_check(data_dir: Path, *, min_free_bytes: int = MIN_FREE_BYTES) -> Check:
    """Unhealthy when the data directory is not writable, degraded when it is nearly full."""

    def check() -> tuple[Status, str]:
        probe = data_dir / f".health-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        free = shutil.disk_usage(data_dir).free
        if free < min_free_bytes:
            return "degraded", f"writable, only {free / 2**20:.0f} MiB free"
        return "healthy", f"writable, {free / 2**30:.1f} GiB free"

    return check


def state_db_check(db: StateDB, *, shared: bool = False) -> Check:
    """`shared`: shared mode, where it holds the projects' configs and files too."""

    def check() -> tuple[Status, str]:
        db.ping()
        if shared:
            return "healthy", f"{db.engine.dialect.name}: state, project configs and files"
        return "healthy", db.engine.dialect.name

    return check


def worker_check(db: StateDB) -> Check:
    """Degraded without a live ingestion worker: uploads work, processing waits in the queue."""

    def check() -> tuple[Status, str]:
        workers = live_workers(db)
        if not workers:
            return "degraded", "no ingestion worker seen recently; queued processing will wait"
        return "healthy", f"{len(workers)} worker(s) alive"

    return check


def broker_check(broker_url: str, broker_dir: Path) -> Check:
    """The queue processing jobs go through: the filesystem broker's folder must be writable;
    a network broker (Redis) must answer. Unhealthy either way: nothing gets processed."""

    def check() -> tuple[Status, str]:
        if broker_url.startswith("filesystem"):
            queue = broker_dir / "queue"
            if not queue.is_dir():
                return "healthy", "filesystem broker (its folder comes with the first job)"
            if not os.access(queue, os.W_OK):
                return "unhealthy", f"filesystem broker: {queue} is not writable"
            return "healthy", f"filesystem broker, {sum(1 for _ in queue.iterdir())} job(s) queued"
        from kombu.connection import Connection

        with Connection(broker_url, connect_timeout=3) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
            return "healthy", f"{connection.transport_cls} broker answering"

    return check


def model_server_check() -> tuple[Status, str]:
    """`universal` models run in this process on llama.cpp (xllamacpp); without it they cannot
    load (ollama and openai models are other servers, checked when a chat uses them)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "degraded", "xllamacpp is not installed: universal models cannot load"
    return "healthy", f"llama.cpp in process (xllamacpp {importlib.metadata.version('xllamacpp')})"


def chroma_check(url: str, *, timeout: float = 3.0) -> Check:
    """The Chroma server the stores keep their vectors in (`LF_CHROMA_URL`): unhealthy when it
    does not answer its heartbeat, since no query or processing of its stores can run."""
    server = url.rstrip("/")

    def check() -> tuple[Status, str]:
        try:
            response = httpx.get(f"{server}/api/v2/heartbeat", timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            return "unhealthy", f"Chroma server at {server} cannot be reached: {exc}"
        return "healthy", f"Chroma server at {server} answering"

    return check
