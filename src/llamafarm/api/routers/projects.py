"""Projects API: `/v1/projects/{namespace}[/{project}]`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from llamafarm.api.deps import ChromaClientsDep, ProjectStoreDep, StateDBDep
from llamafarm.api.errors import errors
from llamafarm.api.schemas.projects import (
    ConfigChecked,
    ConfigVersion,
    NamespaceList,
    NamespacePublic,
    ProjectList,
    ProjectPublic,
    ProjectResponse,
)
from llamafarm.projects import ProjectRef, lifecycle
from llamafarm.rag.stores import drop_project_stores, release

router = APIRouter(
    prefix="/projects", tags=["projects", "mcp"], responses=errors(400, 404, 409, 413, 422)
)


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Project name: 1-64 letters, digits, '_', '.' or '-'.")
    config_template: str = Field(default="default", description="server, rag, default or custom.")


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = Field(description="The whole new llamafarm.yaml as JSON.")


@router.get(
    "/{namespace}",
    operation_id="projects_list",
    summary="List projects",
    description="The projects of a namespace, each with its whole llamafarm.yaml config as JSON, "
    "its `warnings`, `last_modified` and, for a config that is invalid on disk, "
    "`validation_error` (such projects are listed, so they can be fixed). A namespace without "
    "projects gives an empty list.",
)
def list_projects(namespace: str, store: ProjectStoreDep) -> ProjectList:
    projects = [ProjectPublic.of(p) for p in store.list(namespace)]
    return ProjectList(total=len(projects), projects=projects)


@router.post(
    "/{namespace}",
    operation_id="project_create",
    summary="Create a project",
    description="Create a project from a config template: `default` (= `rag`: a chat model, "
    "the database `main_db`, the processing strategy `default_processor` and a dataset "
    "`documents` ready for uploads), `server` (chat only) or a custom one. 409 if it exists.",
    status_code=201,
)
def create_project(
    namespace: str, body: ProjectCreate, store: ProjectStoreDep, db: StateDBDep
) -> ProjectResponse:
    project = lifecycle.create_project(
        projects=store, db=db, ref=ProjectRef(namespace, body.name), template=body.config_template
    )
    return ProjectResponse(project=ProjectPublic.of(project))


@router.get(
    "/{namespace}/{project}",
    operation_id="project_get",
    summary="Get a project",
    description="A project's whole llamafarm.yaml config as JSON: models, prompts, RAG "
    "databases and strategies, data processing strategies and datasets; `warnings` lists the "
    "keys the server does not act on; an invalid config on disk comes with "
    "`validation_error` (fix it with project_update).",
)
def get_project(namespace: str, project: str, store: ProjectStoreDep) -> ProjectResponse:
    return ProjectResponse(project=ProjectPublic.of(store.get(namespace, project)))


@router.put(
    "/{namespace}/{project}",
    operation_id="project_update",
    summary="Replace a project's config",
    description="Replace a project's whole llamafarm.yaml config (take it from project_get, "
    "change it, send it all back). Validated whole; `name` and `namespace` must match the "
    "path; 409 if it drops a dataset that still has files. Stored as written (`${VAR}` kept); "
    "`warnings` lists the keys the server accepts but does not act on.",
)
def update_project(
    namespace: str, project: str, body: ProjectUpdate, store: ProjectStoreDep, db: StateDBDep
) -> ProjectResponse:
    updated = lifecycle.update_project(
        projects=store, db=db, ref=ProjectRef(namespace, project), document=body.config
    )
    return ProjectResponse(project=ProjectPublic.of(updated))


config_router = APIRouter(
    prefix="/projects", tags=["projects"], responses=errors(400, 404, 409, 413, 422)
)
"""The Designer's routes: the namespaces to pick from, and the config editor's (not MCP tools,
since project_update checks the same and an agent keeps no previous version to go back to)."""


@config_router.get(
    "",
    operation_id="namespaces_list",
    summary="List namespaces",
    description="The namespaces that hold at least one project, by name, each with its count "
    "of projects.",
)
def list_namespaces(store: ProjectStoreDep) -> NamespaceList:
    counted = [
        NamespacePublic(name=n, project_count=len(store.names(n))) for n in store.namespaces()
    ]
    namespaces = [n for n in counted if n.project_count]
    return NamespaceList(total=len(namespaces), namespaces=namespaces)


@config_router.post(
    "/{namespace}/{project}/config/validate",
    operation_id="project_config_validate",
    summary="Check a config without saving it",
    description="Everything project_update checks, without writing: `{valid, warnings}`, or the "
    "same 400/422 it would answer (a 422 names each bad key's path: `Invalid config: "
    "runtime.models[0].provider: ...; ...`).",
)
def validate_config(
    namespace: str, project: str, body: ProjectUpdate, store: ProjectStoreDep
) -> ConfigChecked:
    warnings = store.check_update(namespace, project, body.config)
    return ConfigChecked(valid=True, warnings=warnings)


@config_router.get(
    "/{namespace}/{project}/config/previous",
    operation_id="project_config_previous",
    summary="The config before the last update",
    description="The llamafarm.yaml as it was before the last project_update (its `.bak`), to "
    "undo an update by sending it back with project_update; 404 when there is none.",
)
def previous_config(namespace: str, project: str, store: ProjectStoreDep) -> ConfigVersion:
    return ConfigVersion(config=store.previous(namespace, project))


@router.delete(
    "/{namespace}/{project}",
    operation_id="project_delete",
    summary="Delete a project and its data",
    description="Delete the project's folder and everything in it: config, uploaded files and "
    "stored vectors, those of its databases on a Chroma or Qdrant server too (503 when one "
    "cannot be reached, and nothing is deleted). Cannot be undone.",
    responses=errors(503),
)
def delete_project(
    namespace: str, project: str, store: ProjectStoreDep, db: StateDBDep, chroma: ChromaClientsDep
) -> ProjectResponse:
    deleted = lifecycle.delete_project(
        projects=store,
        db=db,
        ref=ProjectRef(namespace, project),
        release=release,
        drop_stores=lambda config, folder: drop_project_stores(config, folder, chroma),
    )
    return ProjectResponse(project=ProjectPublic.of(deleted))
