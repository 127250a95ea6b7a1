"""Importing an example: as a new project, or its data (or one dataset) into an existing one.

Files go through the datasets upload service and processing through the tasks service, as if a
client had uploaded them. An import that fails half-way undoes what it did.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from llamafarm.config import parse_config
from llamafarm.datasets import service as datasets
from llamafarm.errors import BadRequest, Conflict
from llamafarm.examples.catalog import Example
from llamafarm.names import check_name
from llamafarm.projects import ProjectRef, ProjectStore, lifecycle
from llamafarm.rag.databases import delete_database
from llamafarm.rag.stores import ChromaClients, drop_project_stores, release
from llamafarm.state import StateDB
from llamafarm.tasks.service import queue_processing

log = logging.getLogger(__name__)


def import_project(
    *,
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    example: Example,
    ref: ProjectRef,
    process: bool,
    limit: int,
    chroma: ChromaClients,
) -> dict[str, Any]:
    """A new project from the example's llamafarm.yaml, with its files uploaded (and queued)."""
    projects.path(ref.namespace, ref.project)  # 400 for an unsafe name, before anything else
    document = copy.deepcopy(example.document)
    document["namespace"], document["name"] = ref.namespace, ref.project
    parse_config(document, projects.policy)
    names = [d.name for d in example.manifest.datasets]
    lifecycle.create_project(projects=projects, db=db, ref=ref)  # 409 if it exists; replaced below
    try:
        projects.update(ref.namespace, ref.project, document)
        task_ids = _fill(
            projects, db, celery, example, ref, names, process=process, limit=limit, chroma=chroma
        )
    except BaseException:
        try:
            lifecycle.delete_project(
                projects=projects,
                db=db,
                ref=ref,
                release=release,
                drop_stores=lambda config, folder: drop_project_stores(config, folder, chroma),
            )
        except Exception:
            log.exception("could not remove the half-imported project %s", ref)
        raise
    return _result(ref, names, task_ids)


def import_data(
    *,
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    example: Example,
    ref: ProjectRef,
    include_strategies: bool,
    process: bool,
    limit: int,
    chroma: ChromaClients,
) -> dict[str, Any]:
    """Add the example's databases, strategies (optionally) and datasets to a project.

    A name the project already uses is a conflict: all of them are named and nothing changes.
    """
    projects.load(ref.namespace, ref.project)  # 404 first
    rag = example.document.get("rag") or {}
    databases = copy.deepcopy(rag.get("databases") or [])
    strategies = copy.deepcopy(rag.get("data_processing_strategies") or [])
    if not include_strategies:
        strategies = []
    names = [d.name for d in example.manifest.datasets]
    entries = [copy.deepcopy(_entry(example.document, "datasets", name)) for name in names]

    def merge(document: dict[str, Any]) -> None:  # under the project lock
        target = document.get("rag") or {}
        taken = [
            f"{what} {sorted(clash)}"
            for what, clash in (
                ("database(s)", _names(target, "databases") & _names(rag, "databases")),
                (
                    "data processing strategy(ies)",
                    _names(target, "data_processing_strategies") & {s["name"] for s in strategies},
                ),
                ("dataset(s)", _names(document, "datasets") & set(names)),
            )
            if clash
        ]
        if taken:
            raise Conflict(
                f"Project {ref.namespace}/{ref.project} already has {'; '.join(taken)} "
                f"of example {example.id!r}; nothing was imported"
            )
        known = _names(target, "data_processing_strategies") | {s["name"] for s in strategies}
        _require_strategies(entries, known)
        if databases and not target.get("databases") and rag.get("default_database"):
            target["default_database"] = rag["default_database"]
        target.setdefault("databases", []).extend(databases)
        target.setdefault("data_processing_strategies", []).extend(strategies)
        document["rag"] = target
        document.setdefault("datasets", []).extend(entries)

    projects.edit(ref.namespace, ref.project, merge)
    added_databases = [d["name"] for d in databases]
    added_strategies = [s["name"] for s in strategies]
    try:
        task_ids = _fill(
            projects, db, celery, example, ref, names, process=process, limit=limit, chroma=chroma
        )
    except BaseException:
        _undo(projects, db, ref, chroma, names, added_databases, added_strategies)
        raise
    return _result(ref, names, task_ids)


def import_dataset(
    *,
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    example: Example,
    ref: ProjectRef,
    dataset: str,
    include_strategies: bool,
    process: bool,
    limit: int,
    chroma: ChromaClients,
) -> dict[str, Any]:
    """Add one dataset of the example, with the database and strategy it needs.

    A database or strategy of the same name already in the project is reused when its config
    is identical to the example's, and a conflict otherwise. Without `include_strategies` the
    project's own strategy of that name is used, whatever its config.
    """
    example.dataset(check_name(dataset, kind="dataset name"))  # 404 when the example lacks it
    projects.load(ref.namespace, ref.project)
    entry = copy.deepcopy(_entry(example.document, "datasets", dataset))
    rag = example.document.get("rag") or {}
    database = copy.deepcopy(_entry(rag, "databases", entry["database"]))
    strategy = copy.deepcopy(
        _entry(rag, "data_processing_strategies", entry["data_processing_strategy"])
    )
    added: dict[str, list[str]] = {"databases": [], "data_processing_strategies": []}

    def merge(document: dict[str, Any]) -> None:  # under the project lock
        added["databases"].clear()
        added["data_processing_strategies"].clear()
        if dataset in _names(document, "datasets"):
            raise Conflict(f"Dataset {dataset!r} already exists in {ref.namespace}/{ref.project}")
        target = document.get("rag") or {}
        wanted = [("databases", database, "Database")]
        if include_strategies:
            wanted.append(("data_processing_strategies", strategy, "Data processing strategy"))
        else:
            _require_strategies([entry], _names(target, "data_processing_strategies"))
        for key, definition, label in wanted:
            present = next(
                (e for e in target.get(key) or [] if e.get("name") == definition["name"]), None
            )
            if present is None:
                if key == "databases" and not target.get("databases"):
                    target["default_database"] = definition["name"]
                target.setdefault(key, []).append(definition)
                added[key].append(definition["name"])
            elif present != definition:
                raise Conflict(
                    f"{label} {definition['name']!r} already exists in {ref.namespace}/"
                    f"{ref.project} with another config than example {example.id!r} needs"
                )
        document["rag"] = target
        document.setdefault("datasets", []).append(entry)

    projects.edit(ref.namespace, ref.project, merge)
    try:
        task_ids = _fill(
            projects,
            db,
            celery,
            example,
            ref,
            [dataset],
            process=process,
            limit=limit,
            chroma=chroma,
        )
    except BaseException:
        _undo(
            projects,
            db,
            ref,
            chroma,
            [dataset],
            added["databases"],
            added["data_processing_strategies"],
        )
        raise
    return _result(ref, [dataset], task_ids)


def _fill(
    projects: ProjectStore,
    db: StateDB,
    celery: Celery,
    example: Example,
    ref: ProjectRef,
    names: list[str],
    *,
    process: bool,
    limit: int,
    chroma: ChromaClients,
) -> list[str]:
    """Upload every file of the datasets, then queue each dataset's processing."""
    for name in names:
        for path in example.files(name):
            with path.open("rb") as handle:
                datasets.upload_file(
                    projects=projects,
                    db=db,
                    ref=ref,
                    dataset=name,
                    source=handle,
                    filename=path.name,
                    limit=limit,
                )
    if not process:
        return []
    return [
        queue_processing(
            projects=projects, db=db, celery=celery, ref=ref, dataset=name, chroma=chroma
        )
        for name in names
    ]


def _undo(
    projects: ProjectStore,
    db: StateDB,
    ref: ProjectRef,
    chroma: ChromaClients,
    names: list[str],
    databases: list[str],
    strategies: list[str],
) -> None:
    """Remove what an import added: datasets with their files, then databases and strategies.

    Each step is tried on its own so one failure does not keep the others from running.
    """

    def drop_strategies(document: dict[str, Any]) -> None:
        rag = document.get("rag") or {}
        rag["data_processing_strategies"] = [
            s
            for s in rag.get("data_processing_strategies") or []
            if s.get("name") not in strategies
        ]

    steps: list[tuple[str, Callable[[], object]]] = [
        (
            f"dataset {name!r}",
            functools.partial(
                datasets.delete_dataset, projects=projects, db=db, ref=ref, name=name, chroma=chroma
            ),
        )
        for name in names
    ]
    steps += [
        (
            f"database {name!r}",
            functools.partial(
                delete_database,
                projects=projects,
                ref=ref,
                name=name,
                delete_collection=True,
                chroma=chroma,
            ),
        )
        for name in databases
    ]
    if strategies:
        steps.append(
            (
                f"strategies {strategies}",
                functools.partial(projects.edit, ref.namespace, ref.project, drop_strategies),
            )
        )
    for what, step in steps:
        try:
            step()
        except Exception:
            log.exception("could not remove %s of a failed import from %s", what, ref)


def _require_strategies(entries: list[dict[str, Any]], known: set[str]) -> None:
    missing = sorted({e["data_processing_strategy"] for e in entries} - known)
    if missing:
        raise BadRequest(
            f"The project has no data processing strategy {missing}, which the example's "
            "datasets use; import with include_strategies: true"
        )


def _entry(document: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    """The entry called `name` of a list in a document; the example was validated, so it exists."""
    entry: dict[str, Any] = next(e for e in document.get(key) or [] if e.get("name") == name)
    return entry


def _names(document: dict[str, Any], key: str) -> set[str]:
    return {str(e.get("name")) for e in document.get(key) or [] if isinstance(e, dict)}


def _result(ref: ProjectRef, names: list[str], task_ids: list[str]) -> dict[str, Any]:
    return {
        "project": ref.project,
        "namespace": ref.namespace,
        "datasets": names,
        "task_ids": task_ids,
    }
