"""Chat sessions: a project's conversations, kept in the state database.

A session is the client's `X-Session-ID` (or a new uuid4 hex) within one project: ordered
messages, each turn (the user's message(s) and the answer) appended at once. A session unused for
longer than its ttl has expired: `history` answers 404 and `open_session` with the same id starts
it again, empty.

Turns of one session are serialised by a lease on the session's row (`lock_owner`,
`lock_expires`), taken with a compare-and-set and polled while another request holds it. Not a
held transaction or row lock: a generation can take minutes, and a SQLite write lock (or a
PostgreSQL transaction) held that long would block every other writer, file ingestion included.
The same short statements work on SQLite and PostgreSQL, across threads, processes and machines.
The holder renews its lease every third of `LEASE_SECONDS` while it generates, so a turn may
last as long as it needs, and a holder that died (a replica killed mid-stream) leaves a lease
that expires within `LEASE_SECONDS`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llamafarm.chat.providers.base import Message, Role
from llamafarm.errors import BadRequest, Conflict, NotFound
from llamafarm.state import ChatMessage, ChatSession, StateDB

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
"""How long a turn's lease lasts unless renewed: how soon a dead holder's session is free."""
WAIT_SECONDS = 330.0
"""How long a request waits for the turn before it (a long generation), then 409."""
POLL_SECONDS = 0.1
"""Longest pause between two looks at a taken lease."""

HISTORY_MESSAGES = 1024
HISTORY_CHARACTERS = 1_000_000
"""What a turn reads of its session, newest first: each request is capped (see the chat
router), and so is what a session grown over many requests hands the model every time."""

LISTED_SESSIONS = 100
"""The most sessions `list_sessions` gives, newest first."""
TITLE_CHARACTERS = 80

_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NO_SYNC = {"synchronize_session": False}


def check_session_id(session_id: str) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        shown = session_id if len(session_id) <= 64 else session_id[:64] + "..."
        raise BadRequest(
            f"Invalid session id {shown!r}: use 1 to 128 characters of A-Z a-z 0-9 . _ : -"
        )
    return session_id


def open_session(
    db: StateDB, *, namespace: str, project: str, session_id: str | None, ttl: float
) -> str:
    """The id of the session a request uses: `session_id` (created when unknown, started again
    empty, under the same id, when unused for more than `ttl` seconds) or a new one."""
    session_id = check_session_id(session_id) if session_id is not None else uuid.uuid4().hex
    for _ in range(3):
        try:
            _open(db, namespace=namespace, project=project, session_id=session_id, ttl=ttl)
            return session_id
        except IntegrityError:
            continue  # a concurrent request created it first: open that one
    raise Conflict(f"Session {session_id!r} could not be opened; try again")


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    title: str | None
    """The start of its first user message; None before its first turn."""
    messages: int
    created_at: float
    last_used_at: float


def list_sessions(db: StateDB, *, namespace: str, project: str) -> list[SessionSummary]:
    """A project's live sessions, the most recently used first (at most LISTED_SESSIONS)."""
    now = time.time()
    first_user = (
        select(func.substr(ChatMessage.content, 1, TITLE_CHARACTERS))
        .where(ChatMessage.session_pk == ChatSession.id, ChatMessage.role == "user")
        .order_by(ChatMessage.seq)
        .limit(1)
        .scalar_subquery()
    )
    live = or_(ChatSession.last_used_at + ChatSession.ttl >= now, ChatSession.lock_expires > now)
    with db.session() as session:
        rows = session.execute(
            select(
                ChatSession.session_id,
                first_user,
                ChatSession.next_seq,
                ChatSession.created_at,
                ChatSession.last_used_at,
            )
            .where(ChatSession.namespace == namespace, ChatSession.project == project, live)
            .order_by(ChatSession.last_used_at.desc())
            .limit(LISTED_SESSIONS)
        )
        return [SessionSummary(*row) for row in rows]


def history(db: StateDB, *, namespace: str, project: str, session_id: str) -> list[Message]:
    """The session's messages, oldest first; 404 when unknown or expired."""
    with db.session() as session:
        row = session.scalars(select(ChatSession).where(_key(namespace, project, session_id)))
        found = row.one_or_none()
        if found is None or not _is_live(found, time.time()):
            raise _not_found(namespace, project, session_id)
        return _messages(session, found.id)


def append(
    db: StateDB, *, namespace: str, project: str, session_id: str, messages: Sequence[Message]
) -> None:
    """Append a whole turn at once: its messages stay adjacent whatever runs beside it."""
    with db.session() as session:
        if not _append(session, _key(namespace, project, session_id), messages):
            raise _not_found(namespace, project, session_id)


@contextmanager
def turn(
    db: StateDB,
    *,
    namespace: str,
    project: str,
    session_id: str,
    lease: float = LEASE_SECONDS,
    wait: float = WAIT_SECONDS,
) -> Iterator[list[Message]]:
    """Hold the session for one turn and yield its history; the caller generates, then calls
    `append` before leaving. A second turn on the session waits until this one is over.

    404 when the session is unknown (call `open_session` first); 409 when it stays held for
    more than `wait` seconds. No transaction stays open while the caller generates.
    """
    owner = uuid.uuid4().hex
    pk = _acquire(db, namespace, project, session_id, owner=owner, lease=lease, wait=wait)
    held = threading.Event()
    renewal = threading.Thread(
        target=_renew, args=(db, pk, owner, lease, held), name="session-lease", daemon=True
    )
    renewal.start()
    try:
        with db.session() as session:
            messages = _newest(session, pk)
        yield messages
    finally:
        held.set()
        renewal.join()
        with db.session() as session:
            session.execute(
                update(ChatSession)
                .where(ChatSession.id == pk, ChatSession.lock_owner == owner)
                .values(lock_owner=None, lock_expires=None)
                .execution_options(**_NO_SYNC)
            )


def delete_session(db: StateDB, *, namespace: str, project: str, session_id: str) -> None:
    """Delete a session and its history; a turn in progress on it gets 404 from `append`."""
    now = time.time()
    with db.session() as session:
        gone = _delete(session, _key(namespace, project, session_id))
    if not any(_was_live(row, now) for row in gone):
        raise _not_found(namespace, project, session_id)


def delete_all_sessions(db: StateDB, *, namespace: str, project: str) -> int:
    """Delete every session of a project; how many, leaving out sessions that had expired."""
    now = time.time()
    with db.session() as session:
        gone = _delete(
            session, and_(ChatSession.namespace == namespace, ChatSession.project == project)
        )
    return sum(_was_live(row, now) for row in gone)


def purge_expired(db: StateDB, *, ttl: float) -> int:
    """Delete sessions unused for more than their own ttl or `ttl`, unless in a turn."""
    now = time.time()
    expired = and_(
        or_(ChatSession.last_used_at + ChatSession.ttl < now, ChatSession.last_used_at < now - ttl),
        or_(ChatSession.lock_expires.is_(None), ChatSession.lock_expires <= now),
    )
    with db.session() as session:
        return len(_delete(session, expired))


def _open(db: StateDB, *, namespace: str, project: str, session_id: str, ttl: float) -> None:
    now = time.time()
    key = _key(namespace, project, session_id)
    in_use = or_(ChatSession.last_used_at >= now - ttl, ChatSession.lock_expires > now)
    with db.session() as session:
        # Write first: on SQLite the UPDATE takes the write lock (even when it matches nothing),
        # so the look and the reset below are one atomic step; PostgreSQL locks the row instead.
        touched = session.execute(
            update(ChatSession)
            .where(key, in_use)
            .values(last_used_at=now, ttl=ttl)
            .execution_options(**_NO_SYNC)
        )
        if _rowcount(touched) == 1:
            return
        row = session.scalars(select(ChatSession).where(key).with_for_update()).one_or_none()
        if row is None:
            session.add(
                ChatSession(
                    namespace=namespace,
                    project=project,
                    session_id=session_id,
                    created_at=now,
                    last_used_at=now,
                    ttl=ttl,
                    next_seq=0,
                )
            )
            session.flush()  # IntegrityError here when a concurrent request created it
            return
        if row.last_used_at < now - ttl and not (row.lock_expires or 0) > now:
            # Expired: the same id starts again, empty.
            session.execute(
                delete(ChatMessage)
                .where(ChatMessage.session_pk == row.id)
                .execution_options(**_NO_SYNC)
            )
            row.created_at, row.next_seq = now, 0
        row.last_used_at, row.ttl = now, ttl


def _acquire(
    db: StateDB,
    namespace: str,
    project: str,
    session_id: str,
    *,
    owner: str,
    lease: float,
    wait: float,
) -> int:
    """Take the session's lease with a compare-and-set, looking again while someone holds it."""
    key = _key(namespace, project, session_id)
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        with db.session() as session:
            # A read first: waiters only read (never blocking SQLite's writer) until it looks free.
            state = session.execute(
                select(ChatSession.id, ChatSession.lock_expires).where(key)
            ).one_or_none()
        if state is None:
            raise _not_found(namespace, project, session_id)
        pk, expires = state
        now = time.time()
        if expires is None or expires <= now:
            with db.session() as session:
                taken = session.execute(
                    update(ChatSession)
                    .where(
                        ChatSession.id == pk,
                        or_(ChatSession.lock_expires.is_(None), ChatSession.lock_expires <= now),
                    )
                    .values(lock_owner=owner, lock_expires=now + lease, last_used_at=now)
                    .execution_options(**_NO_SYNC)
                )
            if _rowcount(taken) == 1:
                return pk
        if time.monotonic() >= deadline:
            raise Conflict(
                f"Session {session_id!r} is busy with another request for more than "
                f"{wait:g} s; try again later"
            )
        time.sleep(pause)
        pause = min(pause * 2, POLL_SECONDS)


def _renew(db: StateDB, pk: int, owner: str, lease: float, over: threading.Event) -> None:
    """Push the lease on while the turn goes on (until `over`); stops once it is not this
    turn's any more (the session was deleted)."""
    while not over.wait(lease / 3):
        try:
            with db.session() as session:
                renewed = session.execute(
                    update(ChatSession)
                    .where(ChatSession.id == pk, ChatSession.lock_owner == owner)
                    .values(lock_expires=time.time() + lease)
                    .execution_options(**_NO_SYNC)
                )
        except Exception:  # the database away for a moment: try again at the next tick
            log.warning("could not renew the lease of chat session %s", pk, exc_info=True)
            continue
        if _rowcount(renewed) != 1:
            return


def _append(session: Session, where: Any, messages: Sequence[Message]) -> bool:
    """Reserve sequence numbers and insert the messages in one transaction; False when the
    session is gone. The UPDATE locks the row (PostgreSQL) or the database (SQLite) first, so
    concurrent appends get distinct, consecutive numbers."""
    now = time.time()
    reserved = session.execute(
        update(ChatSession)
        .where(where)
        .values(next_seq=ChatSession.next_seq + len(messages), last_used_at=now)
        .returning(ChatSession.id, ChatSession.next_seq)
        .execution_options(**_NO_SYNC)
    ).one_or_none()
    if reserved is None:
        return False
    pk, end = reserved
    start = end - len(messages)
    session.add_all(
        ChatMessage(session_pk=pk, seq=start + i, role=m.role, content=m.content, created_at=now)
        for i, m in enumerate(messages)
    )
    return True


def _delete(session: Session, where: Any) -> list[Any]:
    """Delete the sessions matching `where` with their messages; their rows as they were."""
    session.execute(
        delete(ChatMessage)
        .where(ChatMessage.session_pk.in_(select(ChatSession.id).where(where)))
        .execution_options(**_NO_SYNC)
    )
    # ON DELETE CASCADE also catches messages a concurrent append added in between.
    return list(
        session.execute(
            delete(ChatSession)
            .where(where)
            .returning(ChatSession.last_used_at, ChatSession.ttl, ChatSession.lock_expires)
            .execution_options(**_NO_SYNC)
        )
    )


def _messages(session: Session, pk: int) -> list[Message]:
    rows = session.execute(
        select(ChatMessage.role, ChatMessage.content)
        .where(ChatMessage.session_pk == pk)
        .order_by(ChatMessage.seq)
    )
    return [Message(role=cast(Role, role), content=content) for role, content in rows]


def _newest(session: Session, pk: int) -> list[Message]:
    """The newest messages within HISTORY_MESSAGES and HISTORY_CHARACTERS, oldest first; the
    database counts, so the text of older messages is never sent over."""
    newest_first = ChatMessage.seq.desc()
    ranked = (
        select(
            ChatMessage.seq,
            ChatMessage.role,
            ChatMessage.content,
            func.row_number().over(order_by=newest_first).label("n"),
            func.sum(func.length(ChatMessage.content)).over(order_by=newest_first).label("chars"),
        )
        .where(ChatMessage.session_pk == pk)
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.role, ranked.c.content)
        .where(ranked.c.n <= HISTORY_MESSAGES, ranked.c.chars <= HISTORY_CHARACTERS)
        .order_by(ranked.c.seq)
    )
    return [Message(role=cast(Role, role), content=content) for role, content in rows]


def _key(namespace: str, project: str, session_id: str) -> Any:
    return and_(
        ChatSession.namespace == namespace,
        ChatSession.project == project,
        ChatSession.session_id == check_session_id(session_id),
    )


def _is_live(row: ChatSession, now: float) -> bool:
    return row.last_used_at + row.ttl >= now or (row.lock_expires or 0) > now


def _was_live(row: Any, now: float) -> bool:
    last_used_at, ttl, lock_expires = row
    return bool(last_used_at + ttl >= now or (lock_expires or 0) > now)


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _not_found(namespace: str, project: str, session_id: str) -> NotFound:
    return NotFound(
        f"Chat session {session_id!r} not found in project {namespace}/{project} "
        "(unknown, deleted or expired)"
    )
