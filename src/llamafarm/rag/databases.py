"""RAG database definitions: listed, read, created, changed and deleted in llamafarm.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llamafarm.config.loader import describe_errors
from llamafarm.config.models import Database, EmbeddingStrategy, ProjectConfig
from llamafarm.config.policy import ConfigPolicy
from llamafarm.errors import BadRequest, ConfigInvalid, Conflict, NotFound
from llamafarm.names import check_name
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.embedders import EMBEDDERS, create_embedder
from llamafarm.rag.embedders.reuse import drop_cache
from llamafarm.rag.index import index_folder
from llamafarm.rag.retrieval import RETRIEVERS, Strategies
from llamafarm.rag.service import find_database
from llamafarm.rag.stores import STORES, ChromaClients, create_store, index_records, release

IMMUTABLE = ("name", "type")


@dataclass(frozen=True)
class EmbeddingStrategySummary:
    name: str
    type: str
    priority: int
    is_default: bool


@dataclass(frozen=True)
class RetrievalStrategySummary:
    name: str
    type: str
    is_default: bool


@dataclass(frozen=True)
class DatabaseSummary:
    """A database as lists show it: its strategies' names and which are the defaults."""

    name: str
    type: str
    is_default: bool
    embedding_strategies: list[EmbeddingStrategySummary]
    retrieval_strategies: list[RetrievalStrategySummary]


@dataclass(frozen=True)
class DatabaseListing:
    databases: list[DatabaseSummary]
    default_database: str | None


@dataclass(frozen=True)
class RetrievalStrategyDetails:
    name: str
    type: str
    config: dict[str, Any]
    default: bool
    """Whether retrieval uses this strategy when a query names none."""


@dataclass(frozen=True)
class DatabaseDetails:
    """A database's whole definition, its effective defaults and the datasets that use it."""

    name: str
    type: str
    config: dict[str, Any]
    embedding_strategies: list[EmbeddingStrategy]
    retrieval_strategies: list[RetrievalStrategyDetails]
    default_embedding_strategy: str | None
    default_retrieval_strategy: str
    dependent_datasets: list[str]


@dataclass(frozen=True)
class DatabaseDeletion:
    message: str
    database: DatabaseSummary
    collection_deleted: bool


_NOWHERE = Path("nowhere")
"""Where a store is built only to validate its config (nothing is opened)."""


def list_databases(*, projects: ProjectStore, ref: ProjectRef) -> DatabaseListing:
    config = projects.load(ref.namespace, ref.project)
    databases = config.rag.databases if config.rag else []
    default = find_database(config, None).name if databases else None
    return DatabaseListing(
        databases=[summary(d, is_default=d.name == default) for d in databases],
        default_database=default,
    )


def get_database(*, projects: ProjectStore, ref: ProjectRef, name: str) -> DatabaseDetails:
    config = projects.load(ref.namespace, ref.project)
    return details(config, find_database(config, name))


def create_database(
    *, projects: ProjectStore, ref: ProjectRef, body: dict[str, Any]
) -> DatabaseSummary:
    check_name(str(body.get("name", "")), kind="database name")
    database = _validated(body, projects.policy)

    def add(document: dict[str, Any]) -> None:  # under the project lock
        rag = document["rag"] = document.get("rag") or {}
        entries = rag.setdefault("databases", [])
        if any(entry.get("name") == database.name for entry in entries):
            raise Conflict(f"Database {database.name!r} already exists")
        entries.append(body)

    projects.edit(ref.namespace, ref.project, add)
    config = projects.load(ref.namespace, ref.project)
    default = find_database(config, None).name
    return summary(database, is_default=database.name == default)


def update_database(
    *,
    projects: ProjectStore,
    ref: ProjectRef,
    name: str,
    changes: dict[str, Any],
    chroma: ChromaClients,
) -> DatabaseDetails:
    current = find_database(projects.load(ref.namespace, ref.project), name)  # 404 first
    project_dir = projects.path(ref.namespace, ref.project)
    for field in IMMUTABLE:
        if field in changes and changes[field] != getattr(current, field):
            raise BadRequest(f"Database {field} is immutable; create a new database instead")

    def change(document: dict[str, Any]) -> None:
        entries = (document.get("rag") or {}).get("databases") or []
        index = next((i for i, e in enumerate(entries) if e.get("name") == name), None)
        if index is None:
            raise NotFound(f"Database {name!r} not found")
        updated = {**entries[index], **changes}
        if "config" in changes:  # merged key by key; a key set to null is removed
            merged = {**(entries[index].get("config") or {}), **(changes["config"] or {})}
            updated["config"] = {k: v for k, v in merged.items() if v is not None}
        _validated(updated, projects.policy)
        if (updated.get("config") or {}) != (entries[index].get("config") or {}):
            chunks = create_store(current, project_dir=project_dir, clients=chroma).count()
            if chunks:
                raise Conflict(
                    f"Database {name!r} holds {chunks} chunks: its store config cannot change "
                    "while it does (they would be orphaned or searched with the wrong "
                    "distance). Remove its datasets' files first, or create a new database"
                )
        entries[index] = updated

    projects.edit(ref.namespace, ref.project, change)
    release(project_dir / "stores" / name)  # reopened with the new config when next used
    config = projects.load(ref.namespace, ref.project)
    return details(config, find_database(config, name))


def delete_database(
    *,
    projects: ProjectStore,
    ref: ProjectRef,
    name: str,
    delete_collection: bool,
    chroma: ChromaClients,
) -> DatabaseDeletion:
    config = projects.load(ref.namespace, ref.project)
    database = find_database(config, name)
    default = find_database(config, None).name

    def remove(document: dict[str, Any]) -> None:  # under the lock: datasets may have changed
        datasets = document.get("datasets") or []
        dependents = [d.get("name") for d in datasets if d.get("database") == name]
        if dependents:
            raise Conflict(
                f"Cannot delete database {name!r}: {len(dependents)} dataset(s) depend on it. "
                f"Delete or reassign these datasets first: {dependents}"
            )
        rag = document.get("rag") or {}
        rag["databases"] = [d for d in rag["databases"] if d.get("name") != name]
        if rag.get("default_database") == name:
            del rag["default_database"]

    projects.edit(ref.namespace, ref.project, remove)
    project_dir = projects.path(ref.namespace, ref.project)
    if delete_collection:
        create_store(database, project_dir=project_dir, clients=chroma).drop()
        index_records(database, project_dir, chroma).delete()  # as the drop of its folder does
    drop_cache(index_folder(project_dir, database))  # with the database, its collection or not
    release(project_dir / "stores" / name)
    return DatabaseDeletion(
        message=f"Database {name!r} deleted successfully",
        database=summary(database, is_default=name == default),
        collection_deleted=delete_collection,
    )


def summary(database: Database, *, is_default: bool) -> DatabaseSummary:
    embedding = database.embedding()
    retrieval_default = Strategies(database).default_name
    return DatabaseSummary(
        name=database.name,
        type=database.type,
        is_default=is_default,
        embedding_strategies=[
            EmbeddingStrategySummary(
                name=e.name,
                type=e.type,
                priority=e.priority,
                is_default=embedding is not None and e.name == embedding.name,
            )
            for e in database.embedding_strategies
        ],
        retrieval_strategies=[
            RetrievalStrategySummary(
                name=r.name, type=r.type, is_default=r.name == retrieval_default
            )
            for r in database.retrieval_strategies
        ],
    )


def details(config: ProjectConfig, database: Database) -> DatabaseDetails:
    embedding = database.embedding()
    retrieval_default = Strategies(database).default_name
    return DatabaseDetails(
        name=database.name,
        type=database.type,
        config=database.config,
        embedding_strategies=database.embedding_strategies,
        retrieval_strategies=[
            RetrievalStrategyDetails(
                name=r.name, type=r.type, config=r.config, default=r.name == retrieval_default
            )
            for r in database.retrieval_strategies
        ],
        default_embedding_strategy=embedding.name if embedding else None,
        default_retrieval_strategy=retrieval_default,
        dependent_datasets=[d.name for d in config.datasets if d.database == database.name],
    )


def _validated(body: dict[str, Any], policy: ConfigPolicy) -> Database:
    """A database definition whose store, embedder and strategy types exist and whose configs
    validate; nothing is loaded or contacted. Its `${VAR}`s are checked when the whole config
    is, but its model folders now: the embedders look at them, and must not tell a client
    whether a folder outside the model roots exists."""
    try:
        database = Database.model_validate(body)
    except ValidationError as exc:
        raise ConfigInvalid(describe_errors(exc.errors())) from exc
    policy.check_database(database)
    STORES.find(database.type, error=BadRequest).from_config(
        path=_NOWHERE, database=database.name, config=database.config
    )
    database.required_embedding(error=BadRequest)
    for strategy in database.embedding_strategies:
        EMBEDDERS.find(strategy.type, error=BadRequest)
        create_embedder(strategy)  # validates its config; models load lazily
    for retrieval in database.retrieval_strategies:
        RETRIEVERS.find(retrieval.type, error=BadRequest)
    Strategies(database).check()
    return database
