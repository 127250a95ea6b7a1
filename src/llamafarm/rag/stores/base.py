"""The vector store protocol every backend implements."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from llamafarm.documents import MetadataValue
from llamafarm.rag.filters import Filter

DistanceMetric = Literal["cosine", "l2", "euclidean", "ip", "inner_product", "dot"]

Where = Mapping[str, MetadataValue]
"""Equality filters on chunk metadata, all of which must hold."""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    id: str
    text: str
    metadata: Mapping[str, MetadataValue]
    score: float
    """A similarity in [0, 1], higher is better (raw BM25 from `keyword_search`)."""


@dataclass(frozen=True)
class Stored:
    """A page of a collection's chunks as stored, vectors included (an export)."""

    ids: list[str]
    texts: list[str]
    vectors: npt.NDArray[np.float32]
    """One row per chunk."""
    metadatas: list[dict[str, MetadataValue]]


class VectorStore(Protocol):
    def replace(
        self,
        where: Where,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        """Make the chunks matching `where` exactly these: `upsert` them, then `delete` the others.

        The old chunks stay until the new ones are stored, so a failure leaves the old set.
        """
        ...

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, MetadataValue]],
    ) -> None:
        """Store these chunks, overwriting any of the same ids (a file's batches, one by one)."""
        ...

    def delete(self, where: Where, *, keep: Sequence[str] = ()) -> int:
        """Remove matching chunks but those in `keep`; returns how many were removed."""
        ...

    def remove(self, ids: Sequence[str]) -> None:
        """Remove these chunks (a file's batches stored before it failed or was cancelled)."""
        ...

    def count(self, where: Where | None = None) -> int: ...

    def search(
        self,
        vector: Sequence[float],
        *,
        top_k: int,
        where: Filter | None = None,
        metric: DistanceMetric | None = None,
        texts: bool = True,
    ) -> list[Hit]:
        """The `top_k` nearest chunks; `metric` other than the store's re-scores its candidates.

        `texts=False`: the hits may come without their text and metadata (empty), which a store
        may then skip reading: a fusion keeps few of its candidates and `fetch`es those.
        """
        ...

    def fetch(self, ids: Sequence[str]) -> dict[str, Hit]:
        """The stored text and metadata of these chunks (score 0), by id; ids not stored (a
        chunk removed since a search found it) are left out."""
        ...

    def keyword_search(self, text: str, *, top_k: int, where: Filter | None = None) -> list[Hit]:
        """The best BM25 matches of the store's lexical index (scores are raw BM25)."""
        ...

    def document_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many chunks hold each (stemmed) term, and how many chunks there are."""
        ...

    def drop(self) -> None:
        """Remove the whole store: its vectors and its lexical index."""
        ...

    def dump(self, *, page: int = 1000) -> Iterator[Stored]:
        """Every chunk of the collection, `page` at a time."""
        ...

    def compact(self) -> None:
        """Give back the space of deleted chunks and collections (vacuum, index merges)."""
        ...

    def discard(self) -> None:
        """Remove this collection and its lexical index, and nothing else of the store's
        folder (a reindex's old generation, or its partial new one)."""
        ...


def server_collection(scope: Sequence[str], name: str) -> str:
    """A collection's name on a shared server: its namespace, project and name joined by dots,
    and a digest of the three, since names may hold dots themselves (`a.b`/`c` and `a`/`b.c`
    differ by the digest). Within Chroma's rules (and Qdrant's): no `..`, letters or digits at
    both ends."""
    parts = [*scope, name]
    readable = ".".join(_ALNUM_ENDS.sub("", part) or "x" for part in parts)
    readable = re.sub(r"\.{2,}", ".", readable)[:480]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


_ALNUM_ENDS = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")
