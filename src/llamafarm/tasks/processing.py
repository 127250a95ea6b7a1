"""What a worker does with one file of a task; plain functions, called by the Celery task."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlalchemy import CursorResult, update

from llamafarm import events
from llamafarm.config.models import Database
from llamafarm.datasets.service import blobs, dataset_store, file_query
from llamafarm.errors import LfError
from llamafarm.events import Timeline
from llamafarm.ingest.pipeline import Outcome, plan, process_file
from llamafarm.ingest.sandbox import Cancelled, ParseLimits, ParsePool
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.embedders.reuse import CACHE_FILE, ReusingEmbedder, VectorCache
from llamafarm.rag.index import index_folder
from llamafarm.rag.stores import ChromaClients, create_store, release_missing
from llamafarm.settings import Settings
from llamafarm.state import FilePhase, FileRecord, FileState, StateDB, TaskFile, TaskRecord
from llamafarm.state.heartbeats import live_workers
from llamafarm.state.progress import OPEN_FILE_STATES

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


@dataclass
class WorkerContext:
    db: StateDB
    projects: ProjectStore
    worker: str
    models: ModelCache = field(default_factory=ModelCache)
    """One embedder per strategy and process, shared by the files processed at once."""
    embedding_cache_bytes: int = 256 << 20
    """Each database's cache of chunk vectors (`LF_EMBEDDING_CACHE_MB`); 0: none."""
    parsing: ParsePool = field(default_factory=lambda: ParsePool(ParseLimits.of(Settings())))
    """The parse processes, shared by the files processed at once."""

    def close(self) -> None:
        """Let go of the worker's models, pools and parse processes."""
        self.parsing.close()
        self.models.close()


def mark_received(ctx: WorkerContext, task_file_id: int) -> None:
    """Name this worker on a PENDING file whose job it has taken from the broker, so that the
    other workers queue the file again if this one dies before it starts it (on Redis the job
    would come back only after the visibility timeout). Never raises: the broker's consumer
    calls it."""
    try:
        with ctx.db.session() as session:
            session.execute(
                update(TaskFile)
                .where(TaskFile.id == task_file_id, TaskFile.state == FileState.PENDING.value)
                .values(worker=ctx.worker)
            )
    except Exception:
        log.exception("could not record that file %s was received", task_file_id)


def run_file(ctx: WorkerContext, task_file_id: int) -> str:
    """Process one TaskFile and record the outcome; returns the file's final state."""
    # A worker lives long: store clients of projects deleted since its last file go now.
    release_missing()
    with ctx.db.session() as session:
        item = session.get(TaskFile, task_file_id)
        if item is None:
            return "MISSING"
        task = item.task
        if item.state not in OPEN_FILE_STATES:
            return item.state  # delivered twice: already done
        if item.state == FileState.STARTED and item.worker in {
            w.worker for w in live_workers(ctx.db)
        }:
            # Delivered again while a live worker processes it (Redis gives a job back after
            # its visibility timeout, however long the file takes): that worker keeps it.
            return "CLAIMED"
        if task.cancelled_at is not None:
            _finish(item, FileState.CANCELLED)
            return item.state
        if item.attempts >= MAX_ATTEMPTS:
            # Redelivered after its worker died each time: a file that kills the process
            # (memory, a crash in a parser) must fail alone instead of looping forever.
            item.error_type = "WorkerLost"
            item.error = (
                f"The worker stopped {item.attempts} times while processing this file "
                "(out of memory, or a crash in a parser?); not trying again"
            )
            _finish(item, FileState.FAILURE)
            return item.state
        # Claim the file with a compare-and-set: a job queued again after a worker died may
        # be delivered twice, and only one delivery may process it.
        claimed = session.execute(
            update(TaskFile)
            .where(
                TaskFile.id == task_file_id,
                TaskFile.state == item.state,
                TaskFile.attempts == item.attempts,
            )
            .values(
                state=FileState.STARTED.value,
                phase=FilePhase.PARSING.value,
                started_at=time.time(),
                worker=ctx.worker,
                attempts=item.attempts + 1,
            )
        )
        if cast(CursorResult[Any], claimed).rowcount != 1:
            return "CLAIMED"
        ref, dataset = ProjectRef(task.namespace, task.project), task.dataset
        record = session.scalars(
            file_query(ref, dataset).where(FileRecord.file_hash == item.file_hash)
        ).one_or_none()
        job = FileJob(ref, dataset, item.file_hash, item.filename, task.task_id)

    if record is None:
        return _fail(ctx, task_file_id, "The file was removed from the dataset", "NotFound")
    timeline = Timeline()
    try:
        return _process(ctx, task_file_id, job, record, timeline)
    finally:
        log_file_event(ctx, task_file_id, job, timeline)


@dataclass(frozen=True)
class FileJob:
    """A file of a task, as its event names it."""

    ref: ProjectRef
    dataset: str
    file_hash: str
    filename: str
    task_id: str


def _process(
    ctx: WorkerContext, task_file_id: int, job: FileJob, record: FileRecord, timeline: Timeline
) -> str:
    """Process a claimed file; its final state."""
    ref = job.ref

    def cancelled() -> bool:
        with ctx.db.session() as session:
            task = session.get(TaskRecord, job.task_id)
            return task is None or task.cancelled_at is not None

    reusing: ReusingEmbedder | None = None
    try:
        steps = plan(
            ctx.projects.load(ref.namespace, ref.project), job.dataset, ctx.models.embedder
        )
        project_dir = ctx.projects.path(ref.namespace, ref.project)
        # Chunks whose text was embedded before (by this embedder, in this database) are not
        # embedded again.
        cache = VectorCache(
            index_folder(project_dir, steps.database) / CACHE_FILE,
            max_bytes=ctx.embedding_cache_bytes,
        )
        reusing = ReusingEmbedder(steps.embedder, cache)
        # The parse process reads a path: in shared mode the bytes are written to this
        # worker's data dir for the while, and removed after.
        with blobs(ctx.projects, ref).local(job.file_hash) as path:
            outcome = process_file(
                plan=replace(steps, embedder=reusing),
                dataset=job.dataset,
                path=path,
                filename=job.filename,
                file_hash=job.file_hash,
                stored_fingerprint=record.fingerprint,
                project_dir=project_dir,
                chroma=ctx.models.chroma,
                parsing=ctx.parsing,
                should_stop=cancelled,
                on_parsed=lambda: _phase(ctx, task_file_id, FilePhase.EMBEDDING),
                on_stored=lambda chunks: _progress(ctx, task_file_id, chunks),
                timeline=timeline,
            )
    except Cancelled:
        with ctx.db.session() as session:
            item = session.get_one(TaskFile, task_file_id)
            item.chunks = 0  # the batches it had stored were taken out again
            _finish(item, FileState.CANCELLED)
        return FileState.CANCELLED
    except LfError as exc:
        return _fail(ctx, task_file_id, exc.detail, type(exc).__name__)
    except Exception as exc:
        log.exception("processing %s failed", job.filename)
        return _fail(ctx, task_file_id, f"{type(exc).__name__}: {exc}", type(exc).__name__, True)
    finally:
        if reusing is not None:
            reusing.close()

    # A cancel that came while the last chunks were stored: reverted before the file is ever
    # reported SUCCESS (a client watching the cancelled task would take that as final).
    stored = outcome.state == FileState.SUCCESS
    cancelled_first = stored and cancelled()
    still_listed = cancelled_first or _record(
        ctx, task_file_id, record.id, outcome, reused=reusing.reused
    )
    # A cancel, or the file's removal, may also come between that look and the record: they
    # revert what they can see as stored, and this check catches what they could not see yet.
    if stored and (cancelled_first or cancelled() or not still_listed):
        # Through the database the chunks went to: a deleted dataset no longer names it.
        revert_file(
            ctx.projects,
            ctx.db,
            ref,
            job.dataset,
            job.file_hash,
            task_file_id,
            database=steps.database,
            chroma=ctx.models.chroma,
        )
        return FileState.REVERTED
    return outcome.state


def _phase(ctx: WorkerContext, task_file_id: int, phase: FilePhase) -> None:
    with ctx.db.session() as session:
        session.execute(
            update(TaskFile).where(TaskFile.id == task_file_id).values(phase=phase.value)
        )


def _progress(ctx: WorkerContext, task_file_id: int, chunks: int) -> None:
    """The file's chunks stored so far, for the task's progress while it runs."""
    with ctx.db.session() as session:
        session.execute(update(TaskFile).where(TaskFile.id == task_file_id).values(chunks=chunks))


def log_file_event(ctx: WorkerContext, task_file_id: int, job: FileJob, timeline: Timeline) -> None:
    """The file's `rag_processing` event, from its task entry as it was left; a failure here
    is logged and never changes the file's outcome."""
    try:
        _write_event(ctx, task_file_id, job, timeline)
    except Exception:
        log.exception("logging the event of %s failed", job.filename)


def _write_event(ctx: WorkerContext, task_file_id: int, job: FileJob, timeline: Timeline) -> None:
    if not ctx.projects.exists(job.ref.namespace, job.ref.project):
        return  # deleted while the file was processed
    with ctx.db.session() as session:
        item = session.get(TaskFile, task_file_id)
        if item is None:
            return
        state, chunks, error = item.state, item.chunks, item.error
    summary = {
        "file": job.filename,
        "dataset": job.dataset,
        "status": state,
        "chunks": chunks,
        "duration_ms": timeline.elapsed_ms(),
        "error": error,
    }
    events.record(
        ctx.db,
        kind=events.RAG_PROCESSING,
        namespace=job.ref.namespace,
        project=job.ref.project,
        timeline=timeline,
        summary=summary,
        data={**summary, "task_id": job.task_id, "file_hash": job.file_hash, "worker": ctx.worker},
        policy=ctx.projects.policy,
    )


def revert_file(
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    dataset: str,
    file_hash: str,
    task_file_id: int,
    *,
    database: Database | None = None,
    chroma: ChromaClients,
) -> None:
    """Remove a file's chunks (from `database`, else its dataset's) and mark it, and its task
    entry, as not stored."""
    project_dir = projects.path(ref.namespace, ref.project)
    store = (
        dataset_store(projects, ref, dataset, chroma)
        if database is None
        else create_store(database, project_dir=project_dir, clients=chroma)
    )
    store.delete({"dataset": dataset, "file_hash": file_hash})
    with db.session() as session:
        item = session.get(TaskFile, task_file_id)
        if item is not None:
            _finish(item, FileState.REVERTED)
        record = session.scalars(
            file_query(ref, dataset).where(FileRecord.file_hash == file_hash)
        ).one_or_none()
        if record is not None:
            record.fingerprint, record.chunk_count = None, 0


def _record(
    ctx: WorkerContext, task_file_id: int, record_id: int, outcome: Outcome, *, reused: int
) -> bool:
    """Store the outcome (`reused`: chunks whose vectors came from the cache); False when the
    file left its dataset meanwhile."""
    with ctx.db.session() as session:
        record = session.get(FileRecord, record_id)
        if record is not None:
            if outcome.state == FileState.SUCCESS:
                record.chunk_count = outcome.chunks
            record.fingerprint, record.processed_at = outcome.fingerprint, time.time()
        item = session.get(TaskFile, task_file_id)
        if item is not None:
            item.chunks = record.chunk_count if record is not None else outcome.chunks
            item.chunks_reused = reused
            _finish(item, outcome.state)
        return record is not None


def _fail(
    ctx: WorkerContext, task_file_id: int, error: str, kind: str, with_trace: bool = False
) -> str:
    with ctx.db.session() as session:
        item = session.get(TaskFile, task_file_id)
        if item is not None:
            item.error, item.error_type = error, kind
            item.chunks = 0  # the batches it had stored were taken out again
            item.traceback = traceback.format_exc() if with_trace else None
            _finish(item, FileState.FAILURE)
    return FileState.FAILURE


def _finish(item: TaskFile, state: FileState) -> None:
    item.state, item.finished_at = state.value, time.time()
