"""Running an ingestion worker: heartbeat, recovery of interrupted files, Celery's worker loop."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from celery import Celery
from sqlalchemy import select

from llamafarm.components import check_components
from llamafarm.config.redaction import install_log_redaction
from llamafarm.errors import LfError
from llamafarm.ingest.sandbox import ParseLimits, ParsePool
from llamafarm.models.policy import config_policy
from llamafarm.projects import ProjectStore
from llamafarm.rag.cache import KEPT, ModelCache, key_of, lanes_for
from llamafarm.rag.embedders import vector_key
from llamafarm.rag.stores import owner_clients
from llamafarm.settings import Settings
from llamafarm.state import FileState, StateDB, TaskFile, TaskRecord
from llamafarm.state.heartbeats import beat, live_workers
from llamafarm.state.progress import OPEN_FILE_STATES
from llamafarm.system.cpus import default_threads
from llamafarm.system.memory import limit_malloc_arenas, map_large_blocks
from llamafarm.tasks.app import PROCESS_FILE, REINDEX, create_celery, job_id
from llamafarm.tasks.processing import WorkerContext
from llamafarm.tasks.reindex import interrupted

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
MALLOC_ARENAS = 2
"""glibc arenas the worker's threads share (`limit_malloc_arenas`)."""
MMAP_THRESHOLD = 1 << 20
"""Blocks this large or larger are mapped alone and handed back when freed (`map_large_blocks`)."""


def run_worker(settings: Settings, *, parent_pid: int | None = None) -> None:
    """Block running a worker; with `parent_pid` it exits when that process is gone."""
    limit_malloc_arenas(MALLOC_ARENAS)  # before the pools' threads start
    map_large_blocks(MMAP_THRESHOLD)
    db = StateDB(settings.state_url, migration_lock_timeout=settings.migration_lock_timeout)
    name = f"{socket.gethostname()}:{os.getpid()}"
    policy = config_policy(settings)
    install_log_redaction(policy)  # for the life of the worker process
    context = WorkerContext(
        db=db,
        projects=ProjectStore(
            settings.projects_dir,
            templates_dir=settings.templates_dir,
            policy=policy,
            check=check_components,
            shared=db if settings.shared else None,
        ),
        worker=name,
        models=ModelCache(
            chroma=owner_clients(settings, db.engine), lanes=lanes_for(default_threads())
        ),
        embedding_cache_bytes=settings.embedding_cache_mb << 20,
        parsing=ParsePool(ParseLimits.of(settings)),
    )
    context.parsing.warm()
    app = create_celery(settings, context)
    beat(db, name)
    requeue_interrupted(db, app, settings)
    # Beside the loop: a file that comes meanwhile waits for the same load, not a second one.
    threading.Thread(target=warm_embedders, args=(context,), daemon=True).start()
    threading.Thread(
        target=_heartbeat, args=(db, name, parent_pid, app, settings), daemon=True
    ).start()
    try:
        app.worker_main(
            [
                "worker",
                # Threads, not processes: one model in memory, and files processed at once share
                # its batches (BatchingEmbedder) while parsing and storing overlap with inference.
                "--pool=threads",
                f"--concurrency={settings.worker_concurrency}",
                f"--loglevel={settings.log_level.upper()}",
                f"--hostname=llamafarm@{name}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        context.close()  # the worker's loaded models, pools and parse processes go with it


def warm_embedders(context: WorkerContext) -> list[str]:
    """Load the local embedders the projects' databases name (at most as many as the worker
    keeps), so the first file pays no load; their names. Remote ones have nothing to load; a
    project or model that cannot be loaded is logged and left to its first file."""
    warmed: list[str] = []
    seen: set[str] = set()
    for namespace in context.projects.namespaces():
        for project in context.projects.list(namespace):
            try:
                config = context.projects.load(namespace, project.name)
            except LfError as exc:
                log.warning("not warming %s/%s: %s", namespace, project.name, exc.detail)
                continue
            for database in config.rag.databases if config.rag else []:
                strategy = database.embedding()
                if strategy is None or len(seen) >= KEPT:
                    continue
                try:
                    vectors = vector_key(strategy)
                    if vectors["type"] != "UniversalEmbedder" or key_of(vectors) in seen:
                        continue
                    seen.add(key_of(vectors))
                    embedder = context.models.embedder(strategy)
                    embedder.embed(["warm up"])
                except LfError as exc:
                    log.warning("not warming embedder %s: %s", strategy.name, exc.detail)
                    continue
                log.info("embedder %s loaded", embedder.name)
                warmed.append(embedder.name)
    return warmed


def requeue_interrupted(db: StateDB, app: Celery, settings: Settings) -> int:
    """Queue again the files a dead worker had taken, and the reindexes it ran.

    Files it had started: the embedded broker cannot redeliver them at all, and Redis only
    after its visibility timeout (a minute). On the embedded broker also the files it had
    fetched but not started yet: a job leaves the queue folder when it is fetched, so a
    PENDING file whose job is not in the folder is in no queue. Jobs delivered twice are
    harmless: the worker claims a file before processing it.
    """
    alive = {w.worker for w in live_workers(db)}
    queued = _queued_jobs(settings)
    with db.session() as session:
        open_files = session.scalars(
            select(TaskFile)
            .join(TaskRecord)
            .where(
                TaskFile.state.in_(OPEN_FILE_STATES),
                TaskRecord.cancelled_at.is_(None),
                # A reindex is one job, not one per file (its files are not queued).
                TaskRecord.kind == "process",
            )
        ).all()
        again = [
            item
            for item in open_files
            if (item.state == FileState.STARTED and item.worker not in alive)
            or (
                item.state == FileState.PENDING
                and queued is not None
                and job_id(item.task_id, item.id) not in queued
            )
        ]
        ids = [(item.task_id, item.id) for item in again]
        reindexes = interrupted(session, alive)
    for task_id, item_id in ids:
        log.warning("re-queueing file %s of task %s: its worker stopped", item_id, task_id)
        app.send_task(PROCESS_FILE, args=[item_id], task_id=job_id(task_id, item_id))
    for task_id in reindexes:
        # Built again from the start: its job first drops what the dead one had built.
        log.warning("re-queueing reindex %s: its worker stopped", task_id)
        app.send_task(REINDEX, args=[task_id], task_id=task_id)
    return len(ids) + len(reindexes)


def _queued_jobs(settings: Settings) -> set[str] | None:
    """Ids of the jobs waiting in the embedded broker's folder; None for other brokers."""
    if not settings.broker.startswith("filesystem"):
        return None
    queued = set()
    for message in (settings.broker_dir / "queue").glob("*.msg"):
        try:
            queued.add(str(json.loads(message.read_bytes())["headers"]["id"]))
        except (OSError, ValueError, KeyError):
            continue  # fetched meanwhile, or not ours
    return queued


def requeue_orphans(db: StateDB, app: Celery, seen: set[tuple[int, int]]) -> int:
    """Queue again the files that workers gone since (killed, their machine lost) had taken:
    started, or received from the broker and not started yet (`mark_received`); once per file
    and attempt (`seen`). On Redis their jobs would come back only after the visibility
    timeout, and no worker may be started again to do it at its start. Every live worker does
    this; a file queued twice is claimed once."""
    alive = {w.worker for w in live_workers(db)}
    with db.session() as session:
        taken = session.execute(
            select(TaskFile.task_id, TaskFile.id, TaskFile.attempts, TaskFile.worker)
            .join(TaskRecord)
            .where(
                TaskFile.state.in_(OPEN_FILE_STATES),
                TaskFile.worker.is_not(None),
                TaskRecord.cancelled_at.is_(None),
                # A reindex is one job, queued again by `requeue_interrupted`.
                TaskRecord.kind == "process",
            )
        ).all()
    again = [
        (task_id, item_id, attempts)
        for task_id, item_id, attempts, worker in taken
        if worker not in alive and (item_id, attempts) not in seen
    ]
    for task_id, item_id, attempts in again:
        log.warning("re-queueing file %s of task %s: its worker stopped", item_id, task_id)
        app.send_task(PROCESS_FILE, args=[item_id], task_id=job_id(task_id, item_id))
        seen.add((item_id, attempts))
    return len(again)


def _heartbeat(
    db: StateDB, name: str, parent_pid: int | None, app: Celery, settings: Settings
) -> None:
    # The embedded broker has one worker, which requeues at its start (requeue_interrupted).
    shared_broker = not settings.broker.startswith("filesystem")
    seen: set[tuple[int, int]] = set()
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("the server that started this worker is gone; stopping")
            os._exit(0)
        try:
            beat(db, name)
            if shared_broker:
                requeue_orphans(db, app, seen)
        except Exception:
            log.exception("could not record the worker heartbeat")
