"""Bodies of the event log routes."""

from __future__ import annotations

from typing import Any

from llamafarm.api.schemas.base import Public


class EventBrief(Public):
    event_id: str
    type: str
    timestamp: str
    summary: dict[str, Any]


class EventList(Public):
    total: int
    events: list[EventBrief]
    limit: int
    offset: int


class EventPublic(EventBrief):
    data: dict[str, Any]
    sub_events: list[dict[str, Any]]
