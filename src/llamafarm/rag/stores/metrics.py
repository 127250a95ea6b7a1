"""What every vector store shares about distances: the metric names a config or a query may
give, re-scoring hits in a metric other than the collection's, and the one error for a query
vector of the wrong size."""

from __future__ import annotations

from typing import Any

import numpy as np

from llamafarm.errors import BadRequest, Conflict

DISTANCES = {
    "cosine": "cosine",
    "l2": "l2",
    "euclidean": "l2",
    "ip": "ip",
    "inner_product": "ip",
    "dot": "ip",
}
"""Metric names as configs and queries write them -> the space (Chroma's names)."""
RESCORE_CANDIDATES = 100
"""Nearest chunks re-scored when a query asks for a metric other than the collection's."""


def space_of(metric: str) -> str:
    if metric not in DISTANCES:
        raise BadRequest(f"Unknown distance_metric {metric!r} (valid: {', '.join(DISTANCES)})")
    return DISTANCES[metric]


def distances(space: str, query: Any, stored: Any) -> Any:
    """Chroma's distance of each stored vector to the query, in another space than its index."""
    if space == "l2":
        return ((stored - query) ** 2).sum(axis=1)
    if space == "ip":
        return 1.0 - stored @ query
    norms = np.linalg.norm(stored, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    return 1.0 - (stored @ query) / np.maximum(norms, 1e-12)


def similarity(space: str, distance: float) -> float:
    """A distance as a similarity in [0, 1]: cosine and inner product clipped, l2 as 1/(1+d)."""
    if space == "l2":
        return 1.0 / (1.0 + max(float(distance), 0.0))
    return min(max(1.0 - float(distance), 0.0), 1.0)


def size_conflict(collection: str, size: int) -> Conflict:
    """A query vector whose size is not the collection's: its embedder changed."""
    return Conflict(
        f"Collection {collection!r} holds vectors of another size than this query's ({size}): "
        "the embedder changed since its files were processed; process the datasets again"
    )
