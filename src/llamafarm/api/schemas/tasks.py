"""Bodies of the tasks routes."""

from __future__ import annotations

from typing import Literal

from llamafarm.api.schemas.base import Public

TaskState = Literal["PENDING", "STARTED", "SUCCESS", "FAILURE", "REVOKED"]


class TaskFile(Public):
    filename: str
    hash: str
    dataset: str
    state: str
    """PENDING, STARTED, SUCCESS, SKIPPED, FAILURE, CANCELLED or REVERTED."""
    phase: str | None
    """While STARTED: `parsing` (until its first chunks come out of the parser), then
    `embedding` (its chunks embedded and stored while the rest is parsed); else null."""
    chunks: int
    chunks_reused: int
    """Of `chunks`, those whose vectors came from the embedding cache (not embedded again)."""
    error: str | None
    error_type: str | None


class TaskProgress(Public):
    current: int
    total: int
    dataset: str
    """The dataset processed; for a reindex, the database."""
    cancelled: bool
    files: list[TaskFile]
    kind: Literal["process", "reindex"]


class TaskResult(Public):
    processed_files: int
    skipped_files: int
    failed_files: int
    details: list[TaskFile]


class TaskPublic(Public):
    task_id: str
    state: TaskState
    meta: TaskProgress
    result: TaskResult | None
    """Null until the state is SUCCESS, FAILURE or REVOKED."""
    error: str | None
    traceback: str | None


class RevertError(Public):
    file_hash: str
    error: str


class TaskCancelled(Public):
    message: str
    task_id: str
    cancelled: bool
    pending_tasks_cancelled: int
    running_tasks_at_cancel: int
    files_reverted: int
    files_failed_to_revert: int
    errors: list[RevertError] | None
    already_completed: bool
    already_cancelled: bool
