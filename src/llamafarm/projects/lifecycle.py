"""Creating, replacing and deleting a project, with its state in the state database."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llamafarm.config.models import ProjectConfig
from llamafarm.errors import ConfigInvalid, Conflict
from llamafarm.projects.store import Project, ProjectRef, ProjectStore
from llamafarm.state import EventLog, FileRecord, StateDB
from llamafarm.state.project_rows import delete_project_rows

log = logging.getLogger(__name__)


def create_project(
    *, projects: ProjectStore, db: StateDB, ref: ProjectRef, template: str = "default"
) -> Project:
    """A new project, with no state from an earlier project of the same name: events a
    request or a worker wrote for the old one as it was being deleted go now."""
    created = projects.create(ref.namespace, ref.project, template=template)
    delete_project_rows(db, namespace=ref.namespace, project=ref.project, tables=(EventLog,))
    return created


def update_project(
    *, projects: ProjectStore, db: StateDB, ref: ProjectRef, document: dict[str, Any]
) -> Project:
    """Replace a project's config, refusing to drop (or move) a dataset that still has files."""
    try:
        current = projects.load(ref.namespace, ref.project).datasets
    except ConfigInvalid:
        current = []  # a broken config must stay fixable by a PUT
    before = {d.name: d.database for d in current}
    after = {
        str(d.get("name")): d.get("database")
        for d in document.get("datasets") or []
        if isinstance(d, dict)
    }
    changed = [name for name, database in before.items() if after.get(name) != database]
    if changed:
        with db.session() as session:
            used = sorted(
                set(
                    session.scalars(
                        select(FileRecord.dataset).where(
                            FileRecord.namespace == ref.namespace,
                            FileRecord.project == ref.project,
                            FileRecord.dataset.in_(changed),
                        )
                    )
                )
            )
        if used:
            raise Conflict(
                f"Dataset(s) {used} still have files: the new config drops them or moves them "
                "to another database. Delete them first (DELETE .../datasets/{name})."
            )
    updated = projects.update(ref.namespace, ref.project, document)
    for warning in updated.warnings:
        log.warning("project %s/%s: %s", ref.namespace, ref.project, warning)
    return updated


def delete_project(
    *,
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    release: Callable[[Path], object],
    drop_stores: Callable[[ProjectConfig, Path], object],
) -> Project:
    """Delete a project's folder (config, files, stores), then its rows in the state DB
    (files, tasks, event logs, chat sessions). `drop_stores` first drops its databases' stores
    (`llamafarm.rag.stores.drop_project_stores`: those on a server are not in the folder);
    `release` lets go of what the process holds open under the folder
    (`llamafarm.rag.stores.release`: its store clients' open files)."""
    try:
        config = projects.load(ref.namespace, ref.project)
    except ConfigInvalid as exc:
        log.warning(
            "project %s/%s has an invalid config (%s): the stores of its databases are not "
            "known, and any on a server are left there",
            ref.namespace,
            ref.project,
            exc.detail,
        )
    else:
        drop_stores(config, projects.path(ref.namespace, ref.project))
    deleted = projects.delete(ref.namespace, ref.project)
    release(projects.path(ref.namespace, ref.project))
    delete_project_rows(db, namespace=ref.namespace, project=ref.project)
    return deleted
