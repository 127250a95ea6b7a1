"""A project's rows across the state database, deleted in one transaction."""

from __future__ import annotations

from sqlalchemy import delete, select

from llamafarm.state.db import StateDB
from llamafarm.state.tables import (
    Base,
    Blob,
    BlobChunk,
    ChatMessage,
    ChatSession,
    DatabaseIndex,
    EventLog,
    FileRecord,
    TaskRecord,
)

PROJECT_TABLES: tuple[type[Base], ...] = (
    FileRecord,
    TaskRecord,
    EventLog,
    ChatSession,
    Blob,
    DatabaseIndex,
)
"""Every table with rows per project; task files, chat messages and blob chunks go with their
parent rows (a shared-mode project's config row goes with `ProjectStore.delete`)."""

_NO_SYNC = {"synchronize_session": False}


def delete_project_rows(
    db: StateDB,
    *,
    namespace: str,
    project: str,
    tables: tuple[type[Base], ...] = PROJECT_TABLES,
) -> None:
    """Delete the project's rows of `tables` (all of them by default)."""
    with db.session() as session:
        if ChatSession in tables:
            sessions = select(ChatSession.id).where(
                ChatSession.namespace == namespace, ChatSession.project == project
            )
            # Explicit, not only ON DELETE CASCADE: SQLite enforces it per connection.
            session.execute(
                delete(ChatMessage)
                .where(ChatMessage.session_pk.in_(sessions))
                .execution_options(**_NO_SYNC)
            )
        if Blob in tables:
            blobs = select(Blob.id).where(Blob.namespace == namespace, Blob.project == project)
            session.execute(
                delete(BlobChunk).where(BlobChunk.blob_id.in_(blobs)).execution_options(**_NO_SYNC)
            )
        for table in tables:
            column = table.__table__.c
            session.execute(
                delete(table)
                .where(column.namespace == namespace, column.project == project)
                .execution_options(**_NO_SYNC)
            )
