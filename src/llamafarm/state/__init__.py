"""State database: file records, tasks, worker heartbeats, chat sessions (SQLite by default,
or any URL)."""

from llamafarm.state.db import StateDB
from llamafarm.state.tables import (
    ChatMessage,
    ChatSession,
    FileRecord,
    TaskFile,
    TaskRecord,
    WorkerHeartbeat,
)

__all__ = [
    "ChatMessage",
    "ChatSession",
    "FileRecord",
    "StateDB",
    "TaskFile",
    "TaskRecord",
    "WorkerHeartbeat",
]
