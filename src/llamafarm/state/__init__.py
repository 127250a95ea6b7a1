"""State database: file records, tasks, worker heartbeats, chat sessions, event logs (SQLite
by default, or any URL)."""

from llamafarm.state.db import StateDB
from llamafarm.state.progress import FilePhase, FileState, TaskState
from llamafarm.state.tables import (
    ChatMessage,
    ChatSession,
    EventLog,
    FileRecord,
    TaskFile,
    TaskRecord,
    WorkerHeartbeat,
)

__all__ = [
    "ChatMessage",
    "ChatSession",
    "EventLog",
    "FilePhase",
    "FileRecord",
    "FileState",
    "StateDB",
    "TaskFile",
    "TaskRecord",
    "TaskState",
    "WorkerHeartbeat",
]
