"""Event logs API: `/v1/projects/{namespace}/{project}/event_logs`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from llamafarm import events
from llamafarm.api.deps import ProjectRefDep, ProjectStoreDep, StateDBDep
from llamafarm.api.errors import errors
from llamafarm.api.schemas.events import EventList, EventPublic

router = APIRouter(
    prefix="/projects/{namespace}/{project}/event_logs",
    tags=["events"],
    responses=errors(400, 404, 413, 422),
)


@router.get("", operation_id="event_logs_list", summary="A project's events, newest first")
def list_events(
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    type: Annotated[
        str | None, Query(max_length=32, description="inference or rag_processing")
    ] = None,
    start_time: Annotated[
        datetime | None,
        Query(description="Events at or after this time (ISO 8601; UTC if no zone)"),
    ] = None,
    end_time: Annotated[
        datetime | None, Query(description="Events at or before this time (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> EventList:
    projects.require(ref.namespace, ref.project)
    page = events.list_events(
        db,
        namespace=ref.namespace,
        project=ref.project,
        kind=type,
        start=start_time,
        end=end_time,
        limit=limit,
        offset=offset,
    )
    return EventList.model_validate(page, from_attributes=True)


@router.get("/{event_id}", operation_id="event_log_get", summary="One event with its sub-events")
def get_event(
    event_id: str, ref: ProjectRefDep, projects: ProjectStoreDep, db: StateDBDep
) -> EventPublic:
    projects.require(ref.namespace, ref.project)
    event = events.get_event(db, namespace=ref.namespace, project=ref.project, event_id=event_id)
    return EventPublic.model_validate(event, from_attributes=True)
