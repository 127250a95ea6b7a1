"""Recovery of files whose worker died, on the embedded broker (which cannot redeliver)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.settings import Settings
from llamafarm.state import StateDB, TaskFile, TaskRecord
from llamafarm.state.heartbeats import beat
from llamafarm.tasks.app import PROCESS_FILE, create_celery
from llamafarm.tasks.processing import WorkerContext, mark_received, run_file
from llamafarm.tasks.service import get_task
from llamafarm.tasks.worker import requeue_interrupted, requeue_orphans, warm_embedders


def queued_jobs(settings: Settings) -> list[dict[str, object]]:
    folder = settings.broker_dir / "queue"
    messages = [json.loads(p.read_text()) for p in sorted(folder.iterdir())]
    return [m["headers"] for m in messages]


def test_files_started_by_a_dead_worker_are_queued_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}"
    alive = f"{socket.gethostname()}:live"
    beat(db, alive)  # this process: alive
    with db.session() as session:
        session.add(
            TaskRecord(
                task_id="t1",
                namespace="ns",
                project="p",
                dataset="d",
                created_at=time.time(),
                files=[
                    TaskFile(file_hash="a" * 64, filename="a", state="STARTED", worker=dead),
                    TaskFile(file_hash="b" * 64, filename="b", state="STARTED", worker=alive),
                    TaskFile(file_hash="c" * 64, filename="c", state="SUCCESS", worker=dead),
                    TaskFile(file_hash="e" * 64, filename="e", state="PENDING"),
                    TaskFile(file_hash="f" * 64, filename="f", state="PENDING"),
                ],
            )
        )
        session.add(
            TaskRecord(
                task_id="t2",
                namespace="ns",
                project="p",
                dataset="d",
                created_at=time.time(),
                cancelled_at=time.time(),
                files=[TaskFile(file_hash="d" * 64, filename="d", state="STARTED", worker=dead)],
            )
        )

    app = create_celery(settings)
    app.send_task(PROCESS_FILE, args=[5], task_id="t1-5")  # f's job is still in the queue
    assert requeue_interrupted(db, app, settings) == 2  # a (its worker died) and e (lost)
    with db.session() as session:
        states = {f.filename: (f.state, f.worker) for f in session.query(TaskFile)}
    assert states == {
        "a": ("STARTED", dead),  # claimed again by the next delivery
        "b": ("STARTED", alive),
        "c": ("SUCCESS", dead),
        "d": ("STARTED", dead),  # its task was cancelled: nothing to resume
        "e": ("PENDING", None),
        "f": ("PENDING", None),
    }
    jobs = queued_jobs(settings)
    assert {job["task"] for job in jobs} == {PROCESS_FILE}
    assert sorted(job["id"] for job in jobs) == ["t1-1", "t1-4", "t1-5"]
    db.close()


def test_a_reindex_whose_worker_died_is_queued_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}"
    alive = f"{socket.gethostname()}:live"
    beat(db, alive)

    def reindex(task_id: str, worker: str | None, started: float | None) -> TaskRecord:
        return TaskRecord(
            task_id=task_id,
            namespace="ns",
            project="p",
            dataset=f"db_{task_id}",
            kind="reindex",
            created_at=time.time(),
            started_at=started,
            running_key=f"reindex:ns/p/db_{task_id}",
            files=[
                TaskFile(file_hash="a" * 64, filename="a", state="SUCCESS", worker=worker),
                TaskFile(file_hash="b" * 64, filename="b", state="STARTED", worker=worker),
                TaskFile(file_hash="c" * 64, filename="c", state="PENDING", worker=worker),
            ],
        )

    with db.session() as session:
        session.add(reindex("r1", dead, time.time()))  # its worker died
        session.add(reindex("r2", alive, time.time()))  # running
        session.add(reindex("r3", None, None))  # queued, not started
    app = create_celery(settings)
    assert requeue_interrupted(db, app, settings) == 1
    assert [(job["task"], job["id"]) for job in queued_jobs(settings)] == [
        ("llamafarm.reindex", "r1")
    ]
    with db.session() as session:
        again = session.get_one(TaskRecord, "r1")
        assert again.started_at is None and again.running_key is not None
        assert [f.state for f in again.files] == ["SUCCESS", "PENDING", "PENDING"]
        assert session.get_one(TaskRecord, "r2").started_at is not None
    db.close()


def test_live_workers_queue_again_once_what_a_dead_one_had_started(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}"
    alive = f"{socket.gethostname()}:live"
    beat(db, alive)
    with db.session() as session:
        session.add(
            TaskRecord(
                task_id="t",
                namespace="ns",
                project="p",
                dataset="d",
                created_at=time.time(),
                files=[
                    TaskFile(file_hash="a" * 64, filename="a", state="STARTED", worker=dead),
                    TaskFile(file_hash="b" * 64, filename="b", state="STARTED", worker=alive),
                    TaskFile(file_hash="c" * 64, filename="c", state="PENDING"),
                    TaskFile(file_hash="d" * 64, filename="d", state="PENDING"),
                    TaskFile(file_hash="e" * 64, filename="e", state="SUCCESS", worker=dead),
                ],
            )
        )
        # A reindex is one job, queued again by requeue_interrupted, never file by file.
        session.add(
            TaskRecord(
                task_id="r",
                namespace="ns",
                project="p",
                dataset="db",
                kind="reindex",
                created_at=time.time(),
                started_at=time.time(),
                files=[TaskFile(file_hash="f" * 64, filename="f", state="STARTED", worker=dead)],
            )
        )
    # d's job was taken from the broker by the worker that died, before it started it.
    mark_received(WorkerContext(db=db, projects=ProjectStore(tmp_path), worker=dead), 4)
    mark_received(WorkerContext(db=db, projects=ProjectStore(tmp_path), worker=dead), 5)
    app = create_celery(settings)
    seen: set[tuple[int, int]] = set()
    assert requeue_orphans(db, app, seen) == 2
    assert requeue_orphans(db, app, seen) == 0  # queued already: not again every heartbeat
    assert sorted(job["id"] for job in queued_jobs(settings)) == ["t-1", "t-4"]
    with db.session() as session:
        session.get_one(TaskFile, 1).attempts = 1  # taken and lost again
    assert requeue_orphans(db, app, seen) == 1
    db.close()


def test_a_file_delivered_again_stays_with_the_live_worker_processing_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    alive = f"{socket.gethostname()}:live"
    beat(db, alive)
    with db.session() as session:
        session.add(
            TaskRecord(
                task_id="t",
                namespace="ns",
                project="p",
                dataset="d",
                created_at=time.time(),
                files=[
                    TaskFile(
                        file_hash="a" * 64, filename="a", state="STARTED", worker=alive, attempts=1
                    )
                ],
            )
        )
    context = WorkerContext(db=db, projects=ProjectStore(settings.projects_dir), worker="w")
    assert run_file(context, 1) == "CLAIMED"
    with db.session() as session:
        item = session.get_one(TaskFile, 1)
        assert (item.state, item.worker, item.attempts) == ("STARTED", alive, 1)
    db.close()


def test_a_file_that_keeps_killing_its_worker_fails_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    with db.session() as session:
        task = TaskRecord(
            task_id="t",
            namespace="ns",
            project="p",
            dataset="d",
            created_at=time.time(),
            files=[TaskFile(file_hash="a" * 64, filename="bomb.pdf", state="STARTED", attempts=2)],
        )
        session.add(task)
        session.flush()
        item_id = task.files[0].id
    context = WorkerContext(db=db, projects=ProjectStore(settings.projects_dir), worker="w")
    assert run_file(context, item_id) == "FAILURE"
    with db.session() as session:
        item = session.get_one(TaskFile, item_id)
        assert item.error_type == "WorkerLost"
        assert "stopped 2 times" in (item.error or "")
    db.close()


def test_the_worker_loads_the_projects_local_embedders_at_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = StateDB(settings.state_url)
    projects = ProjectStore(settings.projects_dir, templates_dir=settings.templates_dir)
    projects.create("acme", "one", template="rag")
    projects.create("acme", "two", template="rag")  # the same model: loaded once
    projects.create("other", "remote", template="rag")
    projects.edit(
        "other",
        "remote",
        lambda document: document["rag"]["databases"][0].update(
            embedding_strategies=[
                {
                    "name": "default_embeddings",
                    "type": "OllamaEmbedder",
                    "config": {"model": "nomic-embed-text"},
                }
            ]
        ),
    )
    context = WorkerContext(db=db, projects=projects, worker="test")
    assert warm_embedders(context) == ["all-MiniLM-L6-v2"]  # nothing to load for a remote one
    embedder = context.models.embedder(
        projects.load("acme", "one").rag.databases[0].required_embedding()  # type: ignore[union-attr]
    )
    loaded = [key for key in context.models.shared._items]
    assert loaded and embedder.embed(["x"])  # the model was there already
    assert [key for key in context.models.shared._items] == loaded
    context.models.close()
    db.close()


def test_a_task_reports_the_step_each_started_file_is_at(tmp_path: Path) -> None:
    db = StateDB(Settings(data_dir=tmp_path).state_url)
    files = [
        TaskFile(file_hash="a" * 64, filename="a", state="PENDING"),
        TaskFile(file_hash="b" * 64, filename="b", state="STARTED", phase="parsing"),
        TaskFile(file_hash="c" * 64, filename="c", state="STARTED", phase="embedding"),
        TaskFile(file_hash="d" * 64, filename="d", state="SUCCESS", phase="embedding"),
    ]
    with db.session() as session:
        session.add(
            TaskRecord(
                task_id="t1",
                namespace="ns",
                project="p",
                dataset="d",
                created_at=time.time(),
                files=files,
            )
        )
    report = get_task(db=db, ref=ProjectRef("ns", "p"), task_id="t1")
    assert [(f.filename, f.state, f.phase) for f in report.meta.files] == [
        ("a", "PENDING", None),
        ("b", "STARTED", "parsing"),
        ("c", "STARTED", "embedding"),
        ("d", "SUCCESS", None),  # only a started file is at a step
    ]
