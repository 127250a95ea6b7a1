"""Bodies of the projects routes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llamafarm.api.schemas.base import Public
from llamafarm.projects import Project


class ProjectPublic(Public):
    namespace: str
    name: str
    config: dict[str, Any]
    warnings: list[str] = Field(
        default_factory=list,
        description="Config keys accepted but not honoured here (e.g. LlamaFarm options).",
    )

    @classmethod
    def of(cls, project: Project) -> ProjectPublic:
        return cls(
            namespace=project.namespace,
            name=project.name,
            config=project.config,
            warnings=list(project.warnings),
        )


class ProjectResponse(Public):
    project: ProjectPublic


class ProjectList(Public):
    total: int
    projects: list[ProjectPublic]
