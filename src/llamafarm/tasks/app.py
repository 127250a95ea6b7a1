"""The Celery app: the same code on the embedded filesystem broker or on Redis."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from llamafarm.settings import Settings
from llamafarm.tasks.processing import WorkerContext, mark_received, run_file
from llamafarm.tasks.reindex import run_reindex

PROCESS_FILE = "llamafarm.process_file"
REINDEX = "llamafarm.reindex"
"""A database's reindex: one job, its Celery id the task's id."""
QUEUE = "llamafarm"
REDELIVER_SECONDS = 60
"""On Redis: seconds after which a job taken but not acknowledged goes back to the queue."""


def job_id(task_id: str, task_file_id: int) -> str:
    """The Celery id of one file's job, so a cancel can revoke it."""
    return f"{task_id}-{task_file_id}"


def create_celery(settings: Settings, context: WorkerContext | None = None) -> Celery:
    """The app; a worker passes its context, which registers the job that uses it."""
    app = Celery("llamafarm", set_as_current=False)
    conf: dict[str, Any] = {
        "broker_url": settings.broker,
        "result_backend": settings.result_backend or None,
        "task_ignore_result": not settings.result_backend,
        # Jobs are acknowledged when done: on Redis a job of a worker that dies goes back to
        # the queue (after the visibility timeout, REDELIVER_SECONDS); live workers queue again
        # at once the files a dead one had taken (tasks.worker.requeue_orphans), and the next
        # worker that starts those of dead workers (tasks.worker.requeue_interrupted).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        # Fail an API request fast when the broker is down instead of retrying for minutes.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    }
    if settings.broker.startswith(("redis://", "rediss://")):
        # A job a worker took and did not finish (the worker died, even before it recorded
        # taking it) goes back to the queue after this long instead of Redis's hour; a live
        # worker that still processes it keeps it (run_file).
        conf["broker_transport_options"] = {"visibility_timeout": REDELIVER_SECONDS}
    if settings.broker.startswith("filesystem"):
        queue = settings.broker_dir / "queue"
        control = settings.broker_dir / "control"
        for folder in (queue, control):
            folder.mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    app.conf.update(conf)
    if context is not None:

        def process_file(task_file_id: int) -> str:
            return run_file(context, task_file_id)

        def reindex(task_id: str) -> str:
            return run_reindex(context, task_id)

        app.task(name=PROCESS_FILE)(process_file)
        app.task(name=REINDEX)(reindex)

        def received(sender: Any = None, request: Any = None, **_: Any) -> None:
            # A job the worker has taken from the broker but not started (Celery reserves
            # a few ahead): if the worker dies, the others know to queue it again.
            if getattr(sender, "app", None) is app and request.name == PROCESS_FILE:
                mark_received(context, request.args[0])

        signals.task_received.connect(received, weak=False)
    return app
