"""Projects: one folder with a `llamafarm.yaml` each, under `$LF_DATA_DIR/projects/{namespace}/`."""

from llamafarm.projects.store import Project, ProjectRef, ProjectStore

__all__ = ["Project", "ProjectRef", "ProjectStore"]
