"""Vector stores: a protocol, one module per backend, and a registry by config `type`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llamafarm.config.models import Database, ProjectConfig
from llamafarm.errors import NotFound
from llamafarm.rag.index import (
    FileIndexRecords,
    IndexRecords,
    TableIndexRecords,
    active_generation,
    index_folder,
)
from llamafarm.rag.stores.base import VectorStore, Where
from llamafarm.rag.stores.chroma import LLAMAFARM_KEYS, ChromaStore
from llamafarm.rag.stores.chroma_clients import (
    ChromaClients,
    ChromaServer,
    owner_clients,
    release,
    release_missing,
)
from llamafarm.registry import Registry


class StoreClass(Protocol):
    """What a database `type` names: a class that builds its store from the config."""

    def from_config(
        self,
        *,
        path: Path,
        database: str,
        config: Mapping[str, Any],
        clients: ChromaClients | None = None,
        scope: Sequence[str] = (),
    ) -> VectorStore: ...


STORES: Registry[StoreClass] = Registry("database")
"""Store classes by the `type` a database names."""
STORES.register("ChromaStore", ChromaStore)


class _Deferred:
    """A store class imported on its first use: qdrant_client costs a process 27 MiB and
    1.4 s to import, which a server or worker whose databases are all Chroma never pays."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def load(self) -> StoreClass:
        store_class: StoreClass = getattr(importlib.import_module(self.module), self.name)
        return store_class

    def from_config(
        self,
        *,
        path: Path,
        database: str,
        config: Mapping[str, Any],
        clients: ChromaClients | None = None,
        scope: Sequence[str] = (),
    ) -> VectorStore:
        return self.load().from_config(
            path=path, database=database, config=config, clients=clients, scope=scope
        )


STORES.register("QdrantStore", _Deferred("llamafarm.rag.stores.qdrant", "QdrantStore"))

UNHONOURED: dict[str, frozenset[str]] = {
    "ChromaStore": LLAMAFARM_KEYS,
    "QdrantStore": frozenset({"grpc_port", "prefer_grpc", "vector_size"}),
}
"""LlamaFarm config keys each store accepts but does not act on (the store lives in the
project's folder; the size is the embedder's; chunks are deduplicated by id anyway)."""


def create_store(
    database: Database,
    *,
    project_dir: Path,
    clients: ChromaClients,
    generation: int | None = None,
) -> VectorStore:
    """The store of a project database; embedded stores live in `stores/{database}/` and open
    their clients through `clients`, the caller's owner's (its `ModelCache.chroma`); a store on a
    server names its collection after the project (`project_dir` is `{namespace}/{project}`).

    `generation`: which of its collections (a reindex builds the next beside the serving one);
    None: the one that serves now, as its index record says (`index_records`)."""
    store_class = STORES.find(database.type, owner=database.name)
    if not project_dir.is_dir():
        # The project was deleted: never recreate its folder by writing to its store.
        raise NotFound(f"Project folder {project_dir.name!r} no longer exists")
    path = index_folder(project_dir, database)
    if generation is None:
        generation = active_generation(index_records(database, project_dir, clients))
    config = database.config
    if generation:
        base = config.get("collection_name") or database.name
        config = {**config, "collection_name": f"{base}_g{generation}"}
    return store_class.from_config(
        path=path,
        database=database.name,
        config=config,
        clients=clients,
        scope=(project_dir.parent.name, project_dir.name),
    )


def drop_project_stores(config: ProjectConfig, project_dir: Path, clients: ChromaClients) -> None:
    """Drop the store of each of a project's databases, before its folder is deleted: a
    collection on a Chroma or Qdrant server (and its BM25 rows in PostgreSQL) lives outside the
    folder and would outlive the project. A server that cannot be reached is a 503, raised
    before anything is deleted, so the deletion can be tried again."""
    for database in config.rag.databases if config.rag else []:
        create_store(database, project_dir=project_dir, clients=clients).drop()


def index_records(database: Database, project_dir: Path, clients: ChromaClients) -> IndexRecords:
    """Where the database's index record is kept: a row of the state database in shared mode
    (the owner's `clients.records`), else `index.json` in its store's folder. The one place
    that chooses; every reader and writer of the record asks here."""
    if clients.records is not None:
        return TableIndexRecords(
            clients.records, project_dir.parent.name, project_dir.name, database.name
        )
    return FileIndexRecords(index_folder(project_dir, database))


def __getattr__(name: str) -> Any:
    # `from llamafarm.rag.stores import QdrantStore` imports it then, and only then.
    if name == "QdrantStore":
        return _Deferred("llamafarm.rag.stores.qdrant", name).load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "STORES",
    "UNHONOURED",
    "ChromaClients",
    "ChromaServer",
    "ChromaStore",
    "QdrantStore",
    "VectorStore",
    "Where",
    "create_store",
    "drop_project_stores",
    "index_records",
    "owner_clients",
    "release",
    "release_missing",
]
