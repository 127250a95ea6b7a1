"""What a worker does with one file of a task; plain functions, called by the Celery task."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass

from sqlalchemy import select

from llamafarm.errors import LfError
from llamafarm.ingest.pipeline import Cancelled, Outcome, plan, process_file
from llamafarm.projects import ProjectStore
from llamafarm.rag.stores import create_store
from llamafarm.state import FileRecord, StateDB, TaskFile, TaskRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


@dataclass
class WorkerContext:
    db: StateDB
    projects: ProjectStore
    worker: str


def run_file(ctx: WorkerContext, task_file_id: int) -> str:
    """Process one TaskFile and record the outcome; returns the file's final state."""
    with ctx.db.session() as session:
        item = session.get(TaskFile, task_file_id)
        if item is None:
            return "MISSING"
        task = item.task
        if item.state not in ("PENDING", "STARTED"):
            return item.state  # delivered twice: already done
        if task.cancelled_at is not None:
            _finish(item, "CANCELLED")
            return item.state
        if item.attempts >= MAX_ATTEMPTS:
            # Redelivered after its worker died each time: a file that kills the process
            # (memory, a crash in a parser) must fail alone instead of looping forever.
            item.error_type = "WorkerLost"
            item.error = (
                f"The worker stopped {item.attempts} times while processing this file "
                "(out of memory, or a crash in a parser?); not trying again"
            )
            _finish(item, "FAILURE")
            return item.state
        item.state, item.started_at, item.worker = "STARTED", time.time(), ctx.worker
        item.attempts += 1
        record = session.scalars(
            select(FileRecord).where(
                FileRecord.namespace == task.namespace,
                FileRecord.project == task.project,
                FileRecord.dataset == task.dataset,
                FileRecord.file_hash == item.file_hash,
            )
        ).one_or_none()
        namespace, project, dataset = task.namespace, task.project, task.dataset
        stored = record.fingerprint if record else None
        task_id = task.task_id

    if record is None:
        return _fail(ctx, task_file_id, "The file was removed from the dataset", "NotFound")

    def cancelled() -> bool:
        with ctx.db.session() as session:
            return session.get(TaskRecord, task_id).cancelled_at is not None  # type: ignore[union-attr]

    project_dir = ctx.projects.path(namespace, project)
    try:
        config = ctx.projects.load(namespace, project)
        steps = plan(config, dataset)
        outcome = process_file(
            plan=steps,
            dataset=dataset,
            path=project_dir / "raw" / item.file_hash,
            filename=item.filename,
            file_hash=item.file_hash,
            stored_fingerprint=stored,
            project_dir=project_dir,
            should_stop=cancelled,
        )
    except Cancelled:
        with ctx.db.session() as session:
            _finish(session.get_one(TaskFile, task_file_id), "CANCELLED")
        return "CANCELLED"
    except LfError as exc:
        return _fail(ctx, task_file_id, exc.detail, type(exc).__name__)
    except Exception as exc:
        log.exception("processing %s failed", item.filename)
        return _fail(ctx, task_file_id, f"{type(exc).__name__}: {exc}", type(exc).__name__, True)

    _record(ctx, task_file_id, record.id, outcome)
    # Cancel may have come while this file was being stored: it reverts files that are
    # SUCCESS when it looks, and this check catches the ones it could not see yet.
    if outcome.state == "SUCCESS" and cancelled():
        store = create_store(steps.database, project_dir=project_dir)
        store.delete({"dataset": dataset, "file_hash": item.file_hash})
        with ctx.db.session() as session:
            _finish(session.get_one(TaskFile, task_file_id), "REVERTED")
            file_record = session.get_one(FileRecord, record.id)
            file_record.fingerprint, file_record.chunk_count = None, 0
        return "REVERTED"
    return outcome.state


def _record(ctx: WorkerContext, task_file_id: int, record_id: int, outcome: Outcome) -> None:
    with ctx.db.session() as session:
        item = session.get_one(TaskFile, task_file_id)
        record = session.get(FileRecord, record_id)
        if record is not None:
            if outcome.state == "SUCCESS":
                record.chunk_count = outcome.chunks
            record.fingerprint, record.processed_at = outcome.fingerprint, time.time()
        item.chunks = record.chunk_count if record is not None else outcome.chunks
        _finish(item, outcome.state)


def _fail(
    ctx: WorkerContext, task_file_id: int, error: str, kind: str, with_trace: bool = False
) -> str:
    with ctx.db.session() as session:
        item = session.get_one(TaskFile, task_file_id)
        item.error, item.error_type = error, kind
        item.traceback = traceback.format_exc() if with_trace else None
        _finish(item, "FAILURE")
    return "FAILURE"


def _finish(item: TaskFile, state: str) -> None:
    item.state, item.finished_at = state, time.time()
