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

    def replace(
        self,
        where: Where,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        """Make the chunks matching `where` exactly these: upsert them, then drop the others.

        The old chunks stay until the new ones are stored, so a failure leaves the old set.
        """
        ...

    def delete(self, where: Where) -> int:
        """Remove matching chunks; returns how many were removed."""
        ...

    def count(self, where: Where | None = None) -> int: ...
