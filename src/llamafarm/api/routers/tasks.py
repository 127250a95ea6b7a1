"""Tasks API: `/v1/projects/{namespace}/{project}/tasks/{task_id}`."""

from __future__ import annotations

from fastapi import APIRouter

from llamafarm.api.deps import (
    CeleryDep,
    ChromaClientsDep,
    ProjectRefDep,
    ProjectStoreDep,
    StateDBDep,
)
from llamafarm.api.errors import errors
from llamafarm.api.schemas.tasks import TaskCancelled, TaskPublic
from llamafarm.tasks import service

router = APIRouter(
    prefix="/projects/{namespace}/{project}/tasks",
    tags=["tasks"],
    responses=errors(400, 404, 413, 422),
)


@router.get(
    "/{task_id}",
    operation_id="task_get",
    name="task_get",
    summary="Status of a background task, per file",
    description="A processing task's state: PENDING, STARTED, then SUCCESS, FAILURE (a file "
    "failed; the others are still processed) or REVOKED (cancelled), with each file's state, "
    "chunk count and error. Poll it until the state is one of the last three.",
    tags=["mcp"],
)
def get_task(ref: ProjectRefDep, task_id: str, db: StateDBDep) -> TaskPublic:
    report = service.get_task(db=db, ref=ref, task_id=task_id)
    return TaskPublic.model_validate(report, from_attributes=True)


@router.delete(
    "/{task_id}", operation_id="task_cancel", summary="Cancel a task and revert its stored files"
)
def cancel_task(
    ref: ProjectRefDep,
    task_id: str,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    chroma: ChromaClientsDep,
) -> TaskCancelled:
    report = service.cancel_task(
        projects=projects, db=db, celery=celery, ref=ref, task_id=task_id, chroma=chroma
    )
    return TaskCancelled.model_validate(report, from_attributes=True)
