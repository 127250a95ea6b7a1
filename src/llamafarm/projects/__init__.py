"""Projects: one folder with a `llamafarm.yaml` each, under `$LF_DATA_DIR/projects/{namespace}/`."""

from llamafarm.projects.lifecycle import create_project, delete_project, update_project
from llamafarm.projects.store import Project, ProjectRef, ProjectStore

__all__ = [
    "Project",
    "ProjectRef",
    "ProjectStore",
    "create_project",
    "delete_project",
    "update_project",
]
