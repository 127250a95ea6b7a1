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


def distances(space: str, query: Any, stored: Any, stored_norms: Any = None) -> Any:
    """Chroma's distance of each stored vector to the query, in another space than its index;
    `stored_norms` (`norms`), where the caller has them, spare computing them again."""
    if space == "l2":
        return ((stored - query) ** 2).sum(axis=1)
    if space == "ip":
        return 1.0 - stored @ query
    lengths = norms(stored) if stored_norms is None else stored_norms
    scale = lengths * max(float(np.linalg.norm(query)), 1e-12)
    return 1.0 - (stored @ query) / np.maximum(scale, 1e-12)


def norms(stored: Any) -> Any:
    """Each row's Euclidean norm: 4 times faster than `np.linalg.norm(stored, axis=1)`."""
    return np.sqrt(np.einsum("ij,ij->i", stored, stored))


def approximation_error(space: str, query: Any, found: Any, moved: Any, lengths: Any) -> Any:
    """The most each distance `found` (by `distances`) from approximate vectors, of norms
    `lengths`, can differ from the distance `distances` gives for the vectors they approximate,
    each within `moved` of its own (the norm of the difference).

    An inner product moves by at most |q| moved, a squared l2 distance by moved (2 |q - x| +
    moved), a cosine by 2 moved / |x|. float32's rounding adds, on each side, up to d 2^-24 of
    each sum (`sums`, both sides together; a cosine has three: the product and two norms) and
    2^-24 of the `1 - ...` (`rounding`, twice over).
    """
    sums = 2.0 * len(query) * 2.0**-24
    rounding = 2.0**-22 * (1.0 + np.abs(found))
    if space == "ip":
        return float(np.linalg.norm(query)) * (moved + sums * (lengths + moved)) + rounding
    if space == "l2":
        apart = np.sqrt(np.maximum(found, 0.0))
        return moved * (2.0 * apart + moved) + sums * (apart + moved) ** 2 + rounding
    return 2.0 * moved / np.maximum(lengths - moved, 1e-12) + 3.0 * sums + rounding


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
