"""Projects API: `/v1/projects/{namespace}[/{project}]`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from llamafarm.api.deps import ProjectStoreDep, StateDBDep
from llamafarm.datasets import service as datasets
from llamafarm.projects import Project, ProjectRef

router = APIRouter(prefix="/projects", tags=["projects", "mcp"])


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Project name: 1-64 letters, digits, '_', '.' or '-'.")
    config_template: str = Field(default="default", description="server, rag, default or custom.")


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = Field(description="The whole new llamafarm.yaml as JSON.")


class ProjectPublic(BaseModel):
    namespace: str
    name: str
    config: dict[str, Any]

    @classmethod
    def of(cls, project: Project) -> ProjectPublic:
        return cls(namespace=project.namespace, name=project.name, config=project.config)


class ProjectResponse(BaseModel):
    project: ProjectPublic


class ProjectList(BaseModel):
    total: int
    projects: list[ProjectPublic]


@router.get("/{namespace}", operation_id="projects_list", summary="List projects")
def list_projects(namespace: str, store: ProjectStoreDep) -> ProjectList:
    projects = [ProjectPublic.of(p) for p in store.list(namespace)]
    return ProjectList(total=len(projects), projects=projects)


@router.post(
    "/{namespace}", operation_id="project_create", summary="Create a project", status_code=201
)
def create_project(namespace: str, body: ProjectCreate, store: ProjectStoreDep) -> ProjectResponse:
    project = store.create(namespace, body.name, template=body.config_template)
    return ProjectResponse(project=ProjectPublic.of(project))


@router.get("/{namespace}/{project}", operation_id="project_get", summary="Get a project")
def get_project(namespace: str, project: str, store: ProjectStoreDep) -> ProjectResponse:
    return ProjectResponse(project=ProjectPublic.of(store.get(namespace, project)))


@router.put(
    "/{namespace}/{project}", operation_id="project_update", summary="Replace a project's config"
)
def update_project(
    namespace: str, project: str, body: ProjectUpdate, store: ProjectStoreDep, db: StateDBDep
) -> ProjectResponse:
    updated = datasets.update_project(
        projects=store, db=db, ref=ProjectRef(namespace, project), document=body.config
    )
    return ProjectResponse(project=ProjectPublic.of(updated))


@router.delete(
    "/{namespace}/{project}", operation_id="project_delete", summary="Delete a project and its data"
)
def delete_project(
    namespace: str, project: str, store: ProjectStoreDep, db: StateDBDep
) -> ProjectResponse:
    deleted = datasets.delete_project(projects=store, db=db, ref=ProjectRef(namespace, project))
    return ProjectResponse(project=ProjectPublic.of(deleted))
