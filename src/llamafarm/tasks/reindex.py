"""A database's blue/green reindex, as the worker runs it (one job for the whole database).

The stored files of every dataset of the database are processed again, one at a time, into the
next generation of its collection (`rag/index.py`), beside the one that serves: queries keep
reading the old one meanwhile. Vectors come through the database's embedding cache, so an
unchanged embedder embeds nothing again. When every file is in, the database's index record
is replaced in one step (the new generation and the fingerprint of the embedder that built
it): the switch, `index.json` replaced, or in shared mode its row updated, which every replica
reads. Then
the files' records take the new chunks' fingerprint and the old collection is dropped. A
cancel or a failure before the switch drops the partial new collection and leaves the old one
serving, as it was.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from llamafarm.datasets.service import blobs, file_query
from llamafarm.errors import Conflict, LfError
from llamafarm.events import Timeline
from llamafarm.ingest.pipeline import Outcome, Plan, process_file
from llamafarm.ingest.sandbox import Cancelled
from llamafarm.projects import ProjectRef
from llamafarm.rag.embedders.reuse import CACHE_FILE, ReusingEmbedder, VectorCache
from llamafarm.rag.index import active_generation, index_folder, record_of
from llamafarm.rag.service import find_database
from llamafarm.rag.stores import VectorStore, create_store, index_records
from llamafarm.state import FilePhase, FileRecord, FileState, TaskFile, TaskRecord
from llamafarm.state.progress import OPEN_FILE_STATES
from llamafarm.tasks.processing import FileJob, WorkerContext, log_file_event

log = logging.getLogger(__name__)

KIND = "reindex"


def running_key(ref: ProjectRef, database: str) -> str:
    """`TaskRecord.running_key` of a database's open reindex: unique, so one runs at a time."""
    return f"reindex:{ref.namespace}/{ref.project}/{database}"


@dataclass(frozen=True)
class _Item:
    id: int
    dataset: str
    file_hash: str
    filename: str


def interrupted(session: Any, alive: set[str]) -> list[str]:
    """Open reindexes whose worker died (none of the workers that held them is alive): made
    claimable again, their files pending; their ids, to queue again. A cancelled one is queued
    too, so that its job drops what was built and lets the database be reindexed again."""
    tasks = session.scalars(
        select(TaskRecord).where(
            TaskRecord.kind == KIND,
            TaskRecord.running_key.is_not(None),
            TaskRecord.started_at.is_not(None),
        )
    ).all()
    again = []
    for task in tasks:
        holders = {f.worker for f in task.files if f.worker}
        if holders & alive:
            continue
        task.started_at = None
        for item in task.files:
            if item.state in OPEN_FILE_STATES:
                item.state, item.chunks = FileState.PENDING.value, 0
        again.append(task.task_id)
    return again


def run_reindex(
    ctx: WorkerContext, task_id: str, *, after_file: Callable[[str], None] = lambda name: None
) -> str:
    """Reindex the task's database; the task's final state. `after_file` hears each file's
    name once its chunks are in the new collection (tests hold the reindex there)."""
    with ctx.db.session() as session:
        task = session.get(TaskRecord, task_id)
        if task is None or task.kind != KIND:
            return "MISSING"
        # Claimed once: a job delivered twice (or a cancel before it started) finds it taken.
        claimed = session.execute(
            update(TaskRecord)
            .where(TaskRecord.task_id == task_id, TaskRecord.started_at.is_(None))
            .values(started_at=time.time())
        )
        if cast(CursorResult[Any], claimed).rowcount != 1:
            return "CLAIMED"
        # Who holds it, for `requeue_interrupted` when this worker dies.
        session.execute(
            update(TaskFile).where(TaskFile.task_id == task_id).values(worker=ctx.worker)
        )
        ref = ProjectRef(task.namespace, task.project)
        name = task.dataset
        items = [_Item(f.id, f.dataset or "", f.file_hash, f.filename) for f in task.files]

    def cancelled() -> bool:
        with ctx.db.session() as session:
            found = session.get(TaskRecord, task_id)
            return found is None or found.cancelled_at is not None

    target: VectorStore | None = None
    try:
        if cancelled():
            raise Cancelled
        config = ctx.projects.load(ref.namespace, ref.project)
        database = find_database(config, name)
        project_dir = ctx.projects.path(ref.namespace, ref.project)
        folder = index_folder(project_dir, database)
        chroma = ctx.models.chroma
        records = index_records(database, project_dir, chroma)
        old = active_generation(records)
        target = create_store(database, project_dir=project_dir, clients=chroma, generation=old + 1)
        target.discard()  # what a run that died left of it
        strategy = database.required_embedding()
        cache = VectorCache(folder / CACHE_FILE, max_bytes=ctx.embedding_cache_bytes)
        reusing = ReusingEmbedder(ctx.models.embedder(strategy), cache)
        built: dict[int, Outcome] = {}
        try:
            for item in items:
                if cancelled():
                    raise Cancelled
                _start(ctx, item.id)
                before = reusing.reused
                timeline = Timeline()
                try:
                    # In shared mode the bytes come from the database to this worker's disk.
                    with blobs(ctx.projects, ref).local(item.file_hash) as path:
                        built[item.id] = process_file(
                            plan=Plan(
                                config.strategy_of(config.dataset(item.dataset)), database, reusing
                            ),
                            dataset=item.dataset,
                            path=path,
                            filename=item.filename,
                            file_hash=item.file_hash,
                            stored_fingerprint=None,
                            project_dir=project_dir,
                            chroma=chroma,
                            parsing=ctx.parsing,
                            should_stop=cancelled,
                            on_parsed=functools.partial(_embedding, ctx, item.id),
                            on_stored=functools.partial(_chunks, ctx, item.id),
                            timeline=timeline,
                            generation=old + 1,
                        )
                except LfError as exc:
                    _end(ctx, item.id, FileState.FAILURE, error=(exc.detail, type(exc).__name__))
                    raise
                else:
                    _end(ctx, item.id, FileState.SUCCESS, outcome=built[item.id])
                    _reused(ctx, item.id, reusing.reused - before)
                finally:
                    job = FileJob(ref, item.dataset, item.file_hash, item.filename, task_id)
                    # Its `rag_processing` event, as a processed file's: the steps' timings.
                    log_file_event(ctx, item.id, job, timeline)
                after_file(item.filename)
        finally:
            reusing.close()
        # The switch: taken only by a task not cancelled meanwhile (a cancel takes it first
        # the same way), so a reindex is either switched or cancelled, never both.
        with ctx.db.session() as session:
            switching = session.execute(
                update(TaskRecord)
                .where(TaskRecord.task_id == task_id, TaskRecord.cancelled_at.is_(None))
                .values(finished_at=time.time())
            )
            if cast(CursorResult[Any], switching).rowcount != 1:
                raise Cancelled
        _drop_removed(ctx, ref, target, items, built)
        record = record_of(strategy, created_at=time.time(), generation=old + 1)
        if not records.switch(record):
            raise Conflict(
                f"The index record of database {name!r} changed while it was reindexed (it "
                "no longer names the generation the reindex began from)"
            )
    except Cancelled:
        _discard(target)
        _close(ctx, task_id, FileState.CANCELLED)
        return "REVOKED"
    except Exception as exc:
        if not isinstance(exc, LfError):
            log.exception("reindex of %s failed", name)
        _discard(target)
        detail = exc.detail if isinstance(exc, LfError) else f"{type(exc).__name__}: {exc}"
        _close(ctx, task_id, FileState.CANCELLED, error=detail)
        return "FAILURE"
    # Switched: queries read the new collection from here on.
    _settle(ctx, ref, items, built)
    try:
        create_store(database, project_dir=project_dir, clients=chroma, generation=old).discard()
    except Exception:
        log.exception("reindex of %s: could not drop generation %d", name, old)
    _close(ctx, task_id, FileState.CANCELLED)
    return "SUCCESS"


def _start(ctx: WorkerContext, item_id: int) -> None:
    with ctx.db.session() as session:
        item = session.get_one(TaskFile, item_id)
        item.state, item.started_at, item.worker = FileState.STARTED.value, time.time(), ctx.worker
        item.phase = FilePhase.PARSING.value
        item.attempts += 1


def _embedding(ctx: WorkerContext, item_id: int) -> None:
    with ctx.db.session() as session:
        session.execute(
            update(TaskFile).where(TaskFile.id == item_id).values(phase=FilePhase.EMBEDDING.value)
        )


def _chunks(ctx: WorkerContext, item_id: int, chunks: int) -> None:
    with ctx.db.session() as session:
        session.execute(update(TaskFile).where(TaskFile.id == item_id).values(chunks=chunks))


def _reused(ctx: WorkerContext, item_id: int, reused: int) -> None:
    with ctx.db.session() as session:
        session.execute(update(TaskFile).where(TaskFile.id == item_id).values(chunks_reused=reused))


def _end(
    ctx: WorkerContext,
    item_id: int,
    state: FileState,
    *,
    outcome: Outcome | None = None,
    error: tuple[str, str] | None = None,
) -> None:
    with ctx.db.session() as session:
        item = session.get_one(TaskFile, item_id)
        item.state, item.finished_at = state.value, time.time()
        item.chunks = outcome.chunks if outcome else 0
        if error:
            item.error, item.error_type = error


def _close(ctx: WorkerContext, task_id: str, open_state: FileState, error: str = "") -> None:
    """The task done: files still open get `open_state`, its database may be reindexed again."""
    with ctx.db.session() as session:
        task = session.get_one(TaskRecord, task_id)
        for item in task.files:
            if item.state in OPEN_FILE_STATES:
                item.state, item.finished_at, item.chunks = open_state.value, time.time(), 0
        task.running_key = None
        task.finished_at = task.finished_at or time.time()
        if error:
            task.error = error


def _discard(target: VectorStore | None) -> None:
    """The partial new collection goes; the serving one was never touched."""
    if target is None:
        return
    try:
        target.discard()
    except Exception:
        log.exception("could not drop a reindex's partial collection")


def _drop_removed(
    ctx: WorkerContext,
    ref: ProjectRef,
    target: VectorStore,
    items: list[_Item],
    built: dict[int, Outcome],
) -> None:
    """Files removed from their datasets, or whose chunks were cleared, while the reindex ran
    leave the new collection too (and `built`, so their records stay as they are)."""
    with ctx.db.session() as session:
        gone = []
        for item in items:
            if item.id not in built:
                continue
            record = session.scalars(
                file_query(ref, item.dataset).where(FileRecord.file_hash == item.file_hash)
            ).one_or_none()
            if record is None or record.fingerprint is None:
                gone.append(item)
    for item in gone:
        target.delete({"dataset": item.dataset, "file_hash": item.file_hash})
        del built[item.id]


def _settle(
    ctx: WorkerContext,
    ref: ProjectRef,
    items: list[_Item],
    built: dict[int, Outcome],
) -> None:
    """The files' records name the chunks the new collection holds, so processing them again
    with the same settings skips them."""
    try:
        with ctx.db.session() as session:
            for item in items:
                outcome = built.get(item.id)
                record = session.scalars(
                    file_query(ref, item.dataset).where(FileRecord.file_hash == item.file_hash)
                ).one_or_none()
                if outcome is None or record is None:
                    continue
                record.fingerprint, record.chunk_count = outcome.fingerprint, outcome.chunks
                record.processed_at = time.time()
    except Exception:
        log.exception("reindex: could not record the files' new fingerprints")
