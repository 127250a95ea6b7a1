"""Event logs: what a project did (chat completions, processed files), with timed sub-events.

An operation keeps a `Timeline` while it runs (in memory: nothing is written on its way) and
`record`s it once it is over; the API writes after the response has gone out, the worker after
the file's result is stored. Events live in the state database, so they are shared by every
server and worker of an installation (SQLite or PostgreSQL), and are purged after
`LF_EVENT_RETENTION_DAYS`.
"""

from llamafarm.events.log import (
    INFERENCE,
    RAG_PROCESSING,
    Event,
    EventBrief,
    EventPage,
    Timeline,
    get_event,
    list_events,
    new_event_id,
    purge_events,
    record,
)

__all__ = [
    "INFERENCE",
    "RAG_PROCESSING",
    "Event",
    "EventBrief",
    "EventPage",
    "Timeline",
    "get_event",
    "list_events",
    "new_event_id",
    "purge_events",
    "record",
]
