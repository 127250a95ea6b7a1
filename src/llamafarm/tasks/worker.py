"""Running an ingestion worker: heartbeat, recovery of interrupted files, Celery's worker loop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from billiard.process import current_process
from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import select

from llamafarm.projects import ProjectStore
from llamafarm.settings import Settings
from llamafarm.state import StateDB, TaskFile, TaskRecord
from llamafarm.state.heartbeats import beat, live_workers
from llamafarm.tasks.app import PROCESS_FILE, create_celery, job_id
from llamafarm.tasks.processing import WorkerContext

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


def run_worker(settings: Settings, *, parent_pid: int | None = None) -> None:
    """Block running a worker; with `parent_pid` it exits when that process is gone."""
    db = StateDB(settings.state_url)
    name = f"{socket.gethostname()}:{os.getpid()}"
    context = WorkerContext(
        db=db,
        projects=ProjectStore(settings.projects_dir, templates_dir=settings.templates_dir),
        worker=name,
    )
    app = create_celery(settings, context)
    worker_process_init.connect(lambda **_: _init_pool_process(db, settings), weak=False)
    beat(db, name)
    requeue_interrupted(db, app)
    threading.Thread(target=_heartbeat, args=(db, name, parent_pid), daemon=True).start()
    app.worker_main(
        [
            "worker",
            f"--concurrency={settings.worker_concurrency}",
            f"--loglevel={settings.log_level.upper()}",
            f"--hostname=llamafarm@{name}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _init_pool_process(db: StateDB, settings: Settings) -> None:
    """Give each pool process its own share of the CPUs.

    Embedding is CPU-bound; pool processes that each use all cores would fight over them.
    Pinning process i to its own cores makes the embedder (which sizes its thread pool from
    the CPUs it may use) run one thread per core, with files processed side by side.
    """
    db.after_fork()
    cores = sorted(os.sched_getaffinity(0))
    if settings.worker_concurrency > 1 and len(cores) > 1:
        index = current_process().index
        share = max(1, len(cores) // settings.worker_concurrency)
        start = (index * share) % len(cores)
        os.sched_setaffinity(0, cores[start : start + share])


def requeue_interrupted(db: StateDB, app: Celery) -> int:
    """Queue again the files a dead worker had started.

    The embedded broker cannot redeliver them at all, and Redis only after its visibility
    timeout (an hour); a second delivery of a file that is done by then is a no-op.
    """
    alive = {w.worker for w in live_workers(db)}
    with db.session() as session:
        stuck = session.scalars(
            select(TaskFile)
            .join(TaskRecord)
            .where(TaskFile.state == "STARTED", TaskRecord.cancelled_at.is_(None))
        ).all()
        again = [item for item in stuck if item.worker not in alive]
        for item in again:
            item.state, item.worker = "PENDING", None
        ids = [(item.task_id, item.id) for item in again]
    for task_id, item_id in ids:
        log.warning("re-queueing file %s of task %s: its worker stopped", item_id, task_id)
        app.send_task(PROCESS_FILE, args=[item_id], task_id=job_id(task_id, item_id))
    return len(ids)


def _heartbeat(db: StateDB, name: str, parent_pid: int | None) -> None:
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("the server that started this worker is gone; stopping")
            os._exit(0)
        try:
            beat(db, name)
        except Exception:
            log.exception("could not record the worker heartbeat")
