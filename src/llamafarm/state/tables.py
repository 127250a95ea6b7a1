"""Tables of the state database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from llamafarm.state.progress import FileState


class Base(DeclarativeBase):
    pass


class FileRecord(Base):
    """A file in a dataset; its bytes live once per project under `raw/{file_hash}`."""

    __tablename__ = "dataset_files"
    __table_args__ = (UniqueConstraint("namespace", "project", "dataset", "file_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    file_hash: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int]
    uploaded_at: Mapped[float]
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    """Fingerprint of the strategy whose chunks are stored; None while not (fully) stored."""
    chunk_count: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[float | None] = mapped_column(default=None)


class TaskRecord(Base):
    """A processing request (one row per action) or a database's reindex, with one TaskFile
    per file."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_running_key", "running_key", unique=True),)

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    """The dataset processed; a reindex's database."""
    created_at: Mapped[float]
    cancelled_at: Mapped[float | None] = mapped_column(default=None)
    cancel_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    kind: Mapped[str] = mapped_column(String(16), default="process", server_default="process")
    """"process" (a dataset's files, one job each) or "reindex" (a database, one job)."""
    started_at: Mapped[float | None] = mapped_column(default=None)
    """When a reindex's job claimed it."""
    finished_at: Mapped[float | None] = mapped_column(default=None)
    """When a reindex switched, failed or finished its cancel."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    """Why a reindex failed."""
    running_key: Mapped[str | None] = mapped_column(String(255), default=None)
    """While a reindex is open, its database's key: unique, so one runs at a time."""
    files: Mapped[list[TaskFile]] = relationship(
        back_populates="task", order_by="TaskFile.id", cascade="all, delete-orphan"
    )


class TaskFile(Base):
    __tablename__ = "task_files"
    __table_args__ = (Index("ix_task_files_task", "task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id", ondelete="CASCADE"))
    file_hash: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(512))
    dataset: Mapped[str | None] = mapped_column(String(64), default=None)
    """A reindex's file: its dataset (a processing task's files are all the task's)."""
    state: Mapped[str] = mapped_column(String(16), default=FileState.PENDING.value)
    """A FileState; stored as its plain value."""
    phase: Mapped[str | None] = mapped_column(String(16), default=None)
    """A FilePhase while the file is STARTED (the step it is at); left as it was after."""
    chunks: Mapped[int] = mapped_column(default=0)
    chunks_reused: Mapped[int] = mapped_column(default=0, server_default="0")
    """Of `chunks`, those whose vectors came from the database's embedding cache."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_type: Mapped[str | None] = mapped_column(String(64), default=None)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[float | None] = mapped_column(default=None)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    task: Mapped[TaskRecord] = relationship(back_populates="files")


class WorkerHeartbeat(Base):
    """Each ingestion worker writes its row every few seconds; /health reads them."""

    __tablename__ = "worker_heartbeats"

    worker: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int]
    last_seen: Mapped[float]


class ChatSession(Base):
    """A conversation of one project; `lock_owner` / `lock_expires` is the lease of the turn
    in progress (see `llamafarm.chat.sessions.turn`)."""

    __tablename__ = "chat_sessions"
    __table_args__ = (
        UniqueConstraint("namespace", "project", "session_id"),
        Index("ix_chat_sessions_last_used", "last_used_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float]
    last_used_at: Mapped[float]
    ttl: Mapped[float]
    """Seconds the session may stay unused; set by the last `open_session`."""
    next_seq: Mapped[int] = mapped_column(default=0)
    lock_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lock_expires: Mapped[float | None] = mapped_column(default=None)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("session_pk", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_pk: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    seq: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]


class EventLog(Base):
    """A recorded operation of a project (a chat completion, a processed file): its summary,
    its details and its timed sub-events (see `llamafarm.events`)."""

    __tablename__ = "event_logs"
    __table_args__ = (
        Index("ix_event_logs_project_time", "namespace", "project", "timestamp"),
        Index("ix_event_logs_time", "timestamp"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(96), unique=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[float]
    """Seconds since the epoch when the operation began."""
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    sub_events: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class ApiKey(Base):
    """An API key: only its SHA-256 is kept; the key itself is shown once, when created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    """The key's first characters, so an operator can tell keys apart in `lf keys list`."""
    namespace: Mapped[str | None] = mapped_column(String(64), default=None)
    """The one namespace the key may reach; None for all."""
    read_only: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float]


class ProjectDocument(Base):
    """A project's `llamafarm.yaml` in shared mode (`LF_BLOB_STORE=database`): the text as
    written and the one before the last update (the file's `.bak` on disk)."""

    __tablename__ = "project_documents"
    __table_args__ = (UniqueConstraint("namespace", "project"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    previous: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(default=1)
    """Counts the writes: a process's parsed copy is good while the version is the same."""
    modified_at: Mapped[float]


class Blob(Base):
    """An uploaded file's bytes in shared mode, once per project and content, in `BlobChunk`s
    (chunked `bytea` on PostgreSQL, the way R2R keeps files)."""

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("namespace", "project", "file_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    file_hash: Mapped[str] = mapped_column(String(64))
    """The SHA-256 of the bytes; a random name while they are being written."""
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float]


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    blob_id: Mapped[int] = mapped_column(
        ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DatabaseIndex(Base):
    """What built a database's index and which of its collections serves, in shared mode
    (`rag/index.py`; `index.json` beside an embedded store otherwise), so that every API
    replica and worker reads the same record and sees a reindex's switch at once."""

    __tablename__ = "database_indexes"

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    database: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[dict[str, Any]] = mapped_column(JSON)
    vectors: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float]
    last_write: Mapped[float]
    generation: Mapped[int] = mapped_column(default=0)


JSONB = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON, as JSONB on PostgreSQL (indexable by GIN)."""


class LexicalChunk(Base):
    """A chunk of a store on a Chroma server, in that store's BM25 index
    (`rag/stores/lexical_pg.py`, used on PostgreSQL): its text and metadata, for filters and
    the hits; its terms are rows of `lexical_postings`."""

    __tablename__ = "lexical_chunks"
    __table_args__ = (
        Index(
            "ix_lexical_chunks_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
    )

    store: Mapped[str] = mapped_column(String(512), primary_key=True)
    """The store's collection name on its server."""
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    length: Mapped[int]
    """Tokens in the text (BM25's document length)."""


class LexicalStore(Base):
    """A store's BM25 statistics, kept by each write of its index (`rag/stores/lexical_pg.py`)
    so a query reads them in one row: its chunks and their tokens. Its row is also the lock by
    which the store's writers take turns."""

    __tablename__ = "lexical_stores"

    store: Mapped[str] = mapped_column(String(512), primary_key=True)
    chunks: Mapped[int]
    tokens: Mapped[int] = mapped_column(BigInteger)


class LexicalPosting(Base):
    """A term of a chunk in a store's BM25 index, as the index's tokenizer stems it: how often
    the chunk holds it (`tf`) and the chunk's length, so a query reads only its terms'
    postings (through the (store, term) index) and needs the chunk rows for filters and the
    texts of its hits alone. Deleting a chunk deletes its postings (the foreign key cascades,
    through the primary key's (store, chunk_id) prefix)."""

    __tablename__ = "lexical_postings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["store", "chunk_id"],
            ["lexical_chunks.store", "lexical_chunks.id"],
            ondelete="CASCADE",
        ),
        Index(
            "ix_lexical_postings_term",
            "store",
            "term",
            postgresql_include=["chunk_id", "tf", "length"],
        ),
    )

    store: Mapped[str] = mapped_column(String(512), primary_key=True)
    chunk_id: Mapped[str] = mapped_column(Text, primary_key=True)
    term: Mapped[str] = mapped_column(Text, primary_key=True)
    tf: Mapped[int]
    """How often the chunk holds the term."""
    length: Mapped[int]
    """The chunk's length (as `LexicalChunk.length`)."""
