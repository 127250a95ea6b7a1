"""The vector store protocol every backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from llamafarm.ingest.documents import MetadataValue

Where = Mapping[str, MetadataValue]
"""Equality filters on chunk metadata, all of which must hold."""


class VectorStore(Protocol):
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None: ...

    def delete(self, where: Where) -> int:
        """Remove matching chunks; returns how many were removed."""
        ...

    def count(self, where: Where | None = None) -> int: ...

    def drop(self) -> None:
        """Delete the whole collection (a no-op when it does not exist)."""
        ...

    def check(self) -> None:
        """Raise when the store cannot be used."""
        ...
