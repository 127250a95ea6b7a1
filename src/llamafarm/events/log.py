"""Event logs: the timeline of one operation, and its row in the state database."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from llamafarm.config.policy import ConfigPolicy
from llamafarm.errors import NotFound
from llamafarm.formats import iso_time
from llamafarm.state import EventLog, StateDB

log = logging.getLogger(__name__)

INFERENCE = "inference"
RAG_PROCESSING = "rag_processing"


@dataclass(frozen=True)
class EventBrief:
    """An event as a list shows it."""

    event_id: str
    type: str
    timestamp: str
    """ISO 8601 UTC, in milliseconds."""
    summary: dict[str, Any]


@dataclass(frozen=True)
class Event(EventBrief):
    """A whole event: its data and its timed sub-events too."""

    data: dict[str, Any]
    sub_events: list[dict[str, Any]]


@dataclass(frozen=True)
class EventPage:
    """A page of a project's events, newest first, and how many there are in all."""

    total: int
    events: list[EventBrief]
    limit: int
    offset: int


class Timeline:
    """The sub-events of one operation, in the order they happened. Each is `{name,
    timestamp, elapsed_ms (since the operation began), duration_ms, data}`: a `mark` lasts
    from the sub-event before it, a `step` from its start to its end."""

    def __init__(self) -> None:
        self.started = time.time()
        self._origin = time.perf_counter()
        self._last = 0.0
        self._marks: list[tuple[str, float, float, dict[str, Any]]] = []

    @property
    def sub_events(self) -> list[dict[str, Any]]:
        """Formatted when read (once, when the event is written): marks are on the hot path."""
        return [
            {
                "name": name,
                "timestamp": iso_time(self.started + at, milliseconds=True),
                "elapsed_ms": round(at * 1000, 3),
                "duration_ms": round(duration * 1000, 3),
                "data": data,
            }
            for name, at, duration, data in self._marks
        ]

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._origin) * 1000, 3)

    def mark(self, name: str, **data: Any) -> None:
        now = time.perf_counter() - self._origin
        self._add(name, now, now - self._last, data)
        self._last = now

    @contextmanager
    def step(self, name: str, **data: Any) -> Iterator[dict[str, Any]]:
        """Times the block; what it puts in the yielded dict (counts) goes into `data`, and
        the exception's type into `data["error"]` when the block fails."""
        begun = time.perf_counter() - self._origin
        try:
            yield data
        except BaseException as exc:
            data["error"] = type(exc).__name__
            raise
        finally:
            ended = time.perf_counter() - self._origin
            self._add(name, begun, ended - begun, data)
            self._last = ended

    def span(self, name: str, begun_ms: float, ended_ms: float, **data: Any) -> None:
        """A sub-event timed by its caller (`elapsed_ms()` at its start and end), for work
        that overlaps other sub-events (concurrent tool calls)."""
        self._add(name, begun_ms / 1000, (ended_ms - begun_ms) / 1000, data)

    def _add(self, name: str, at: float, duration: float, data: dict[str, Any]) -> None:
        self._marks.append((name, at, duration, data))


def new_event_id(kind: str, started: float) -> str:
    """`evt_20240115_103000_inference_3f9a2c1b7e44`."""
    moment = datetime.fromtimestamp(started, UTC).strftime("%Y%m%d_%H%M%S")
    return f"evt_{moment}_{kind}_{secrets.token_hex(6)}"


def record(
    db: StateDB,
    *,
    kind: str,
    namespace: str,
    project: str,
    timeline: Timeline,
    summary: dict[str, Any],
    data: dict[str, Any],
    policy: ConfigPolicy | None = None,
) -> str | None:
    """Store an event; its id, or None when the database refused it (logged: an event log
    must never fail the operation it describes). The policy's secrets are stored redacted."""
    event_id = new_event_id(kind, timeline.started)
    if policy is not None:
        summary, data = policy.redact_data(summary), policy.redact_data(data)
    row = EventLog(
        event_id=event_id,
        namespace=namespace,
        project=project,
        type=kind,
        timestamp=timeline.started,
        summary=summary,
        data=data,
        sub_events=timeline.sub_events
        if policy is None
        else policy.redact_data(timeline.sub_events),
    )
    try:
        with db.session() as session:
            session.add(row)
    except Exception:
        log.exception("recording a %s event of %s/%s failed", kind, namespace, project)
        return None
    return event_id


def list_events(
    db: StateDB,
    *,
    namespace: str,
    project: str,
    kind: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 10,
    offset: int = 0,
) -> EventPage:
    """A page of a project's events, newest first."""
    where = [EventLog.namespace == namespace, EventLog.project == project]
    if kind is not None:
        where.append(EventLog.type == kind)
    if start is not None:
        where.append(EventLog.timestamp >= _seconds(start))
    if end is not None:
        where.append(EventLog.timestamp <= _seconds(end))
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(EventLog).where(*where)) or 0
        rows = session.scalars(
            select(EventLog)
            .where(*where)
            .order_by(EventLog.timestamp.desc(), EventLog.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        events = [_brief(row) for row in rows]
    return EventPage(total=total, events=events, limit=limit, offset=offset)


def get_event(db: StateDB, *, namespace: str, project: str, event_id: str) -> Event:
    """The whole event; 404 when the project has no such event (another project's included)."""
    with db.session() as session:
        row = session.scalars(
            select(EventLog).where(
                EventLog.event_id == event_id,
                EventLog.namespace == namespace,
                EventLog.project == project,
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"Event {event_id!r} not found in {namespace}/{project}")
        return Event(
            event_id=row.event_id,
            type=row.type,
            timestamp=_timestamp(row),
            summary=row.summary,
            data=row.data,
            sub_events=row.sub_events,
        )


def purge_events(db: StateDB, *, retention_days: float, now: float | None = None) -> int:
    """Delete events older than the retention; how many went."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    with db.session() as session:
        result = session.execute(delete(EventLog).where(EventLog.timestamp < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


def _brief(row: EventLog) -> EventBrief:
    return EventBrief(
        event_id=row.event_id, type=row.type, timestamp=_timestamp(row), summary=row.summary
    )


def _timestamp(row: EventLog) -> str:
    return iso_time(row.timestamp, milliseconds=True)


def _seconds(moment: datetime) -> float:
    """A query's time; one without a zone is UTC, as the event timestamps are."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
