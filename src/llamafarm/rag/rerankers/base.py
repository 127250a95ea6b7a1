"""The reranker interface and the score handling every backend shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Reranker(Protocol):
    """Scores how well each text answers a query; every backend implements this."""

    @property
    def name(self) -> str:
        """The model id."""
        ...

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score in [0, 1] per text, in input order; higher is more relevant."""
        ...

    def check(self) -> None:
        """A cheap health probe; raises RerankerUnavailable with the reason."""
        ...


def sigmoid(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    # The tanh form cannot overflow, where 1 / (1 + exp(-x)) warns for large negative x.
    values = np.asarray(logits, dtype=np.float64)
    result: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * values))
    return result
