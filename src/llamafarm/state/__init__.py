"""State database: file records, tasks, worker heartbeats, chat sessions, event logs (SQLite
by default, or any URL)."""

from llamafarm.state.db import StateDB
from llamafarm.state.progress import FileState, TaskState
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
    "FileRecord",
    "FileState",
    "StateDB",
    "TaskFile",
    "TaskRecord",
    "TaskState",
    "WorkerHeartbeat",
]
