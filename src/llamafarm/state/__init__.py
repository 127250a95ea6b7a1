"""State database: file records, tasks, worker heartbeats (SQLite by default, or any URL)."""

from llamafarm.state.db import StateDB
from llamafarm.state.tables import FileRecord, TaskFile, TaskRecord, WorkerHeartbeat

__all__ = ["FileRecord", "StateDB", "TaskFile", "TaskRecord", "WorkerHeartbeat"]
