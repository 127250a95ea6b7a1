"""The states a processing task and each of its files go through.

The values are what the state database stores and the API sends; never change one.
"""

from __future__ import annotations

from enum import StrEnum


class FileState(StrEnum):
    """One file of a task (`task_files.state`)."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    SKIPPED = "SKIPPED"
    """Its chunks were stored already, from the same content and settings."""
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"
    """Its task was cancelled before it was processed."""
    REVERTED = "REVERTED"
    """Its chunks were removed again: the task was cancelled, or the file removed, meanwhile."""


class FilePhase(StrEnum):
    """What a STARTED file is doing (`task_files.phase`)."""

    PARSING = "parsing"
    """Until its first chunks come out of the parse process."""
    EMBEDDING = "embedding"
    """Its chunks are embedded and stored, batch by batch, while the rest is parsed."""


class TaskState(StrEnum):
    """A whole task, derived from its files' states and its cancel flag."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    """Finished, and at least one file failed (the others are still processed)."""
    REVOKED = "REVOKED"
    """Cancelled."""


OPEN_FILE_STATES = frozenset({FileState.PENDING, FileState.STARTED})
"""A file in one of these may still be processed."""

FINISHED_TASK_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED})
