"""Vector stores: a protocol, one module per backend, and a registry by config `type`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llamafarm.config.models import Database
from llamafarm.errors import NotFound
from llamafarm.rag.index import active_generation
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
    None: the one that serves now, as `index.json` records it."""
    store_class = STORES.find(database.type, owner=database.name)
    if not project_dir.is_dir():
        # The project was deleted: never recreate its folder by writing to its store.
        raise NotFound(f"Project folder {project_dir.name!r} no longer exists")
    path = project_dir / "stores" / database.name
    if generation is None:
        generation = active_generation(path)
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
    "owner_clients",
    "release",
    "release_missing",
]
