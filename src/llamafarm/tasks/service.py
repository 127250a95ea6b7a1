"""Tasks as the API sees them: queue a dataset's files or a database's reindex, report
progress, cancel and revert."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

from celery import Celery
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from llamafarm.config.models import ProjectConfig
from llamafarm.datasets.service import file_query, find_dataset, in_project
from llamafarm.errors import Conflict, LfError, NotFound, Unavailable
from llamafarm.ingest.pipeline import file_fingerprint, plan
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.index import check_writable
from llamafarm.rag.service import find_database
from llamafarm.rag.stores import ChromaClients, create_store, index_records
from llamafarm.state import FileRecord, FileState, StateDB, TaskFile, TaskRecord, TaskState
from llamafarm.state.progress import FINISHED_TASK_STATES
from llamafarm.tasks.app import PROCESS_FILE, REINDEX, job_id
from llamafarm.tasks.processing import revert_file
from llamafarm.tasks.reindex import KIND as REINDEX_KIND
from llamafarm.tasks.reindex import running_key

log = logging.getLogger(__name__)

TERMINAL = frozenset(FileState) - {FileState.PENDING, FileState.STARTED}


@dataclass(frozen=True)
class FileProgress:
    filename: str
    hash: str
    dataset: str
    state: str
    """A FileState."""
    phase: str | None
    """A FilePhase while `state` is STARTED, else None."""
    chunks: int
    chunks_reused: int
    """Chunks whose vectors were reused from the embedding cache, not embedded again."""
    error: str | None
    error_type: str | None


@dataclass(frozen=True)
class Progress:
    current: int
    total: int
    dataset: str
    """The dataset processed; a reindex's database."""
    cancelled: bool
    files: list[FileProgress]
    kind: str
    """"process" or "reindex"."""


@dataclass(frozen=True)
class Outcome:
    """The counts of a finished task."""

    processed_files: int
    skipped_files: int
    failed_files: int
    details: list[FileProgress]


@dataclass(frozen=True)
class TaskReport:
    task_id: str
    state: TaskState
    meta: Progress
    result: Outcome | None
    """None until the task is finished."""
    error: str | None
    traceback: str | None


@dataclass(frozen=True)
class RevertError:
    file_hash: str
    error: str


@dataclass(frozen=True)
class CancelReport:
    """What a cancel did; kept on the task (as JSON) for the cancels that come after it."""

    message: str
    task_id: str
    cancelled: bool
    pending_tasks_cancelled: int = 0
    running_tasks_at_cancel: int = 0
    files_reverted: int = 0
    files_failed_to_revert: int = 0
    errors: list[RevertError] | None = None
    already_completed: bool = False
    already_cancelled: bool = False

    @classmethod
    def stored(cls, report: dict[str, Any]) -> CancelReport:
        """The report as `TaskRecord.cancel_report` keeps it."""
        errors = [RevertError(**error) for error in report.get("errors") or []]
        return cls(**{**report, "errors": errors or None})


def queue_processing(
    *,
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    ref: ProjectRef,
    dataset: str,
    file_hashes: list[str] | None = None,
    chroma: ChromaClients,
) -> str:
    """Record a task with one entry per file (all of the dataset's, or the given ones), then
    queue one job per file. A 409 (NeedsReindex) when the dataset's database needs a reindex;
    `chroma`: the caller's store clients (where the index record is, and the store's count)."""
    config = projects.load(ref.namespace, ref.project)
    database = config.database_of(find_dataset(config, dataset))
    project_dir = projects.path(ref.namespace, ref.project)

    def count() -> int:
        return create_store(database, project_dir=project_dir, clients=chroma).count()

    check_writable(
        database,
        index_records(database, project_dir, chroma),
        count,
        [d.name for d in config.datasets if d.database == database.name],
    )
    with db.session() as session:
        reindexing = _reindexing(session, ref, database.name)
    if reindexing is not None:
        # Its chunks would go to the collection the reindex is about to replace.
        raise Conflict(
            f"Database {database.name!r} is being reindexed (task {reindexing}); process "
            "the dataset once it has finished, or cancel it"
        )
    task_id = uuid.uuid4().hex
    query = file_query(ref, dataset).order_by(FileRecord.id)
    if file_hashes is not None:
        query = query.where(FileRecord.file_hash.in_(file_hashes))
    stored = _stored_as(config, dataset)
    with db.session() as session:
        records = session.scalars(query).all()
        now = time.time()
        task = TaskRecord(
            task_id=task_id,
            namespace=ref.namespace,
            project=ref.project,
            dataset=dataset,
            created_at=now,
            files=[
                # Stored already with these settings: skipped here, with no job to run.
                TaskFile(
                    file_hash=r.file_hash,
                    filename=r.filename,
                    state=FileState.SKIPPED.value,
                    chunks=r.chunk_count,
                    started_at=now,
                    finished_at=now,
                )
                if r.fingerprint is not None and r.fingerprint == stored(r.filename)
                else TaskFile(file_hash=r.file_hash, filename=r.filename)
                for r in records
            ],
        )
        session.add(task)
        session.flush()
        items = [item.id for item in task.files if item.state == FileState.PENDING]
    try:
        for item in items:
            celery.send_task(PROCESS_FILE, args=[item], task_id=job_id(task_id, item))
    except Exception as exc:
        with db.session() as session:
            for entry in session.get_one(TaskRecord, task_id).files:
                if entry.state == FileState.PENDING:
                    entry.state, entry.error = FileState.FAILURE, f"could not be queued: {exc}"
        raise Unavailable(f"The task broker is unavailable: {type(exc).__name__}: {exc}") from exc
    return task_id


def _stored_as(config: ProjectConfig, dataset: str) -> Callable[[str], str | None]:
    """The fingerprint a file of the dataset would be stored with now (None when that cannot
    be told here: its job decides). The embedder is made, not loaded."""
    try:
        steps = plan(config, dataset)
    except LfError:
        return lambda filename: None

    def stored(filename: str) -> str | None:
        try:
            return file_fingerprint(steps, filename)
        except LfError:
            return None  # no parser for it: its job reports why

    return stored


def queue_reindex(
    *, projects: ProjectStore, db: StateDB, celery: Celery, ref: ProjectRef, database: str
) -> str:
    """Record a reindex of the database with one entry per stored file of its datasets, then
    queue its job (`tasks/reindex.py`). A 409 while it is reindexed already or one of its
    datasets is processed."""
    config = projects.load(ref.namespace, ref.project)
    name = find_database(config, database).name
    datasets = [d.name for d in config.datasets if d.database == name]
    task_id = uuid.uuid4().hex
    with db.session() as session:
        running = _reindexing(session, ref, name)
        if running is not None:
            raise Conflict(f"Database {name!r} is being reindexed already (task {running})")
        processing = session.scalars(
            select(TaskRecord).where(
                TaskRecord.namespace == ref.namespace,
                TaskRecord.project == ref.project,
                TaskRecord.kind != REINDEX_KIND,
                TaskRecord.dataset.in_(datasets),
                TaskRecord.cancelled_at.is_(None),
            )
        ).all()
        busy = [t.task_id for t in processing if _state(t) not in FINISHED_TASK_STATES]
        if busy:
            raise Conflict(
                f"Database {name!r} has files being processed (task {busy[0]}): reindex it "
                "once they are done, or cancel the task"
            )
        records = session.scalars(
            select(FileRecord)
            .where(
                in_project(ref),
                FileRecord.dataset.in_(datasets),
                FileRecord.fingerprint.is_not(None),
            )
            .order_by(FileRecord.dataset, FileRecord.id)
        ).all()
        session.add(
            TaskRecord(
                task_id=task_id,
                namespace=ref.namespace,
                project=ref.project,
                dataset=name,
                kind=REINDEX_KIND,
                created_at=time.time(),
                running_key=running_key(ref, name),
                files=[
                    TaskFile(file_hash=r.file_hash, filename=r.filename, dataset=r.dataset)
                    for r in records
                ],
            )
        )
        try:
            session.flush()
        except IntegrityError as exc:  # another request's reindex came in between
            raise Conflict(f"Database {name!r} is being reindexed already") from exc
    try:
        celery.send_task(REINDEX, args=[task_id], task_id=task_id)
    except Exception as exc:
        with db.session() as session:
            task = session.get_one(TaskRecord, task_id)
            task.running_key, task.finished_at = None, time.time()
            task.error = f"could not be queued: {exc}"
        raise Unavailable(f"The task broker is unavailable: {type(exc).__name__}: {exc}") from exc
    return task_id


def _reindexing(session: Any, ref: ProjectRef, database: str) -> str | None:
    """The id of the database's open reindex, if one is."""
    found = session.scalars(
        select(TaskRecord.task_id).where(TaskRecord.running_key == running_key(ref, database))
    ).first()
    return found  # type: ignore[no-any-return]


def get_task(*, db: StateDB, ref: ProjectRef, task_id: str) -> TaskReport:
    with db.session() as session:
        return _report(_load(session, ref, task_id))


def cancel_task(
    *,
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    ref: ProjectRef,
    task_id: str,
    chroma: ChromaClients,
) -> CancelReport:
    """Stop queued files, let running ones stop at their next step, revert stored ones (a
    reindex: its job drops what it built; the serving collection was never touched)."""
    with db.session() as session:
        task = _load(session, ref, task_id)
        if task.kind == REINDEX_KIND:
            return _cancel_reindex(db, celery, ref, task_id)
        state = _state(task)
        if state in (TaskState.SUCCESS, TaskState.FAILURE):
            return CancelReport(
                f"Task already {state.lower()}", task_id, cancelled=False, already_completed=True
            )
        # Only the request that sets the flag cancels; a concurrent or later one reports.
        result = session.execute(
            update(TaskRecord)
            .where(TaskRecord.task_id == task_id, TaskRecord.cancelled_at.is_(None))
            .values(cancelled_at=time.time())
        )
        first = cast(CursorResult[Any], result).rowcount
        if not first:
            report = (
                CancelReport.stored(task.cancel_report)
                if task.cancel_report
                else CancelReport("", task_id, cancelled=True)
            )
            return replace(report, message="Task already cancelled", already_cancelled=True)
    # Committed: from here on workers see the flag before starting or storing a file.
    with db.session() as session:
        task = _load(session, ref, task_id)
        pending = [f for f in task.files if f.state == FileState.PENDING]
        for item in pending:
            item.state, item.finished_at = FileState.CANCELLED, time.time()
        running = sum(f.state == FileState.STARTED for f in task.files)
        stored = [(f.id, f.file_hash) for f in task.files if f.state == FileState.SUCCESS]
        dataset = task.dataset
    _revoke(celery, [job_id(task_id, item.id) for item in pending])

    errors: list[RevertError] = []
    reverted = 0
    for item_id, file_hash in stored:
        try:
            revert_file(projects, db, ref, dataset, file_hash, item_id, chroma=chroma)
        except Exception as exc:
            errors.append(RevertError(file_hash, f"{type(exc).__name__}: {exc}"))
        else:
            reverted += 1

    if errors:
        message = f"Task cancelled with cleanup issues: {reverted} reverted, {len(errors)} failed"
    else:
        message = f"Task cancelled and {reverted} file(s) reverted"
    report = CancelReport(
        message,
        task_id,
        cancelled=True,
        pending_tasks_cancelled=len(pending),
        running_tasks_at_cancel=running,
        files_reverted=reverted,
        files_failed_to_revert=len(errors),
        errors=errors or None,
    )
    with db.session() as session:
        session.get_one(TaskRecord, task_id).cancel_report = asdict(report)
    return report


def _cancel_reindex(db: StateDB, celery: Celery, ref: ProjectRef, task_id: str) -> CancelReport:
    with db.session() as session:
        # Exclusive with the reindex's switch, which takes `finished_at` the same way.
        result = session.execute(
            update(TaskRecord)
            .where(
                TaskRecord.task_id == task_id,
                TaskRecord.cancelled_at.is_(None),
                TaskRecord.finished_at.is_(None),
            )
            .values(cancelled_at=time.time())
        )
        if not cast(CursorResult[Any], result).rowcount:
            task = _load(session, ref, task_id)
            if task.cancelled_at is not None:
                return CancelReport(
                    "Task already cancelled", task_id, cancelled=True, already_cancelled=True
                )
            return CancelReport(
                f"Task already {_state(task).lower()}",
                task_id,
                cancelled=False,
                already_completed=True,
            )
    with db.session() as session:
        # Not started yet: taken here, so its job (if it comes at all) finds it claimed.
        unstarted = session.execute(
            update(TaskRecord)
            .where(TaskRecord.task_id == task_id, TaskRecord.started_at.is_(None))
            .values(started_at=time.time(), finished_at=time.time(), running_key=None)
        )
        task = _load(session, ref, task_id)
        pending = [f for f in task.files if f.state == FileState.PENDING]
        for item in pending:
            item.state, item.finished_at = FileState.CANCELLED, time.time()
    running = 1  # its one job, which stops at its next step and drops what it built
    if cast(CursorResult[Any], unstarted).rowcount:
        running = 0
        _revoke(celery, [task_id])
    report = CancelReport(
        "Reindex cancelled: the database's current index keeps serving",
        task_id,
        cancelled=True,
        pending_tasks_cancelled=len(pending),
        running_tasks_at_cancel=running,
    )
    with db.session() as session:
        session.get_one(TaskRecord, task_id).cancel_report = asdict(report)
    return report


def _revoke(celery: Celery, job_ids: list[str]) -> None:
    if not job_ids:
        return
    try:
        celery.control.revoke(job_ids)
    except Exception as exc:
        # Workers also skip files of a cancelled task, so a lost revoke only costs a lookup.
        log.warning("could not revoke %d queued jobs: %s", len(job_ids), exc)


def _load(session: Any, ref: ProjectRef, task_id: str) -> TaskRecord:
    task = session.get(TaskRecord, task_id) if len(task_id) <= 64 else None
    if task is None or (task.namespace, task.project) != (ref.namespace, ref.project):
        raise NotFound(f"Task {task_id[:80]!r} not found in project {ref.namespace}/{ref.project}")
    return task  # type: ignore[no-any-return]


def _state(task: TaskRecord) -> TaskState:
    states = [f.state for f in task.files]
    if task.cancelled_at is not None:
        return TaskState.REVOKED
    if task.kind == REINDEX_KIND:
        # Done when switched and closed, whatever its files' states.
        if task.error:
            return TaskState.FAILURE
        if task.finished_at is not None and task.running_key is None:
            return TaskState.SUCCESS
        return TaskState.PENDING if task.started_at is None else TaskState.STARTED
    if all(s in TERMINAL for s in states):
        return TaskState.FAILURE if FileState.FAILURE in states else TaskState.SUCCESS
    if all(s == FileState.PENDING for s in states):
        return TaskState.PENDING
    return TaskState.STARTED


def _report(task: TaskRecord) -> TaskReport:
    state = _state(task)
    files = [
        FileProgress(
            filename=f.filename,
            hash=f.file_hash,
            dataset=f.dataset or task.dataset,
            state=f.state,
            phase=f.phase if f.state == FileState.STARTED else None,
            chunks=f.chunks,
            chunks_reused=f.chunks_reused,
            error=f.error,
            error_type=f.error_type,
        )
        for f in task.files
    ]
    done = sum(f.state in TERMINAL for f in task.files)
    failed = [f for f in task.files if f.state == FileState.FAILURE]
    result = None
    if state in FINISHED_TASK_STATES:
        result = Outcome(
            processed_files=sum(f.state == FileState.SUCCESS for f in task.files),
            skipped_files=sum(f.state == FileState.SKIPPED for f in task.files),
            failed_files=len(failed),
            details=files,
        )
    error = None
    if state == TaskState.REVOKED:
        error = "Task was cancelled"
    elif task.error:
        error = task.error
    elif failed:
        error = f"{len(failed)} of {len(files)} file(s) failed"
    progress = Progress(
        current=done,
        total=len(files),
        dataset=task.dataset,
        cancelled=task.cancelled_at is not None,
        files=files,
        kind=task.kind,
    )
    return TaskReport(
        task_id=task.task_id,
        state=state,
        meta=progress,
        result=result,
        error=error,
        traceback=next((f.traceback for f in failed if f.traceback), None),
    )
