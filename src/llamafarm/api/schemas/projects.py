"""Bodies of the projects routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from llamafarm.api.schemas.base import Public
from llamafarm.projects import Project


class ProjectPublic(Public):
    namespace: str
    name: str
    config: dict[str, Any] = Field(description="The llamafarm.yaml as written, `${VAR}` kept.")
    warnings: list[str] = Field(
        default_factory=list,
        description="`path: message` for each key the config sets that the server does not act on.",
    )
    validation_error: str | None = Field(
        default=None, description="Why the config on disk is invalid; null when it is valid."
    )
    last_modified: datetime | None = Field(
        default=None, description="When the config file last changed (ISO 8601, UTC)."
    )

    @classmethod
    def of(cls, project: Project) -> ProjectPublic:
        return cls(
            namespace=project.namespace,
            name=project.name,
            config=project.config,
            warnings=list(project.warnings),
            validation_error=project.validation_error,
            last_modified=project.last_modified,
        )


class ProjectResponse(Public):
    project: ProjectPublic


class ProjectList(Public):
    total: int
    projects: list[ProjectPublic]


class NamespacePublic(Public):
    name: str
    project_count: int


class NamespaceList(Public):
    total: int
    namespaces: list[NamespacePublic]


class ConfigChecked(Public):
    valid: bool = Field(description="Always true: an invalid config is a 422 naming each path.")
    warnings: list[str] = Field(
        default_factory=list,
        description="`path: message` for each key the config sets that the server does not act on.",
    )


class ConfigVersion(Public):
    config: dict[str, Any] = Field(description="The previous llamafarm.yaml as written.")
