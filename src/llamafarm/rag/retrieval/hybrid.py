"""Lexical (BM25) and vector search over the same chunks, fused into one ranking.

Both sides score in [0, 1]: the vector side a cosine similarity, the lexical side BM25 as a
fraction of the most the query could score. Fusions:
- `weighted` (default): `alpha * vector + (1 - alpha) * lexical`; a chunk one side did not return
  counts at that side's lowest candidate (lexical: 0 when it returned every match). The score
  keeps an absolute meaning, so `score_threshold` works as with plain vector search; and it
  ranks best on SciFact (bench/retrieval.py).
- `zscore`: each side standardised over the candidates, weighted sum through the normal CDF.
- `minmax`: each side scaled from its lowest to its best candidate, weighted sum.
- `rrf`: weighted reciprocal rank, `1 / (rrf_k + rank)`, divided by its largest possible value.
The last three are relative to the query's candidates: the best of them scores near 1 however
poor the match.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from llamafarm.config.models import StrictModel
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.retrieval.base import MAX_TOP_K, Search
from llamafarm.rag.stores.base import DistanceMetric, Hit

Fused = dict[str, tuple[float, float]]
"""Each chunk's sort key and reported score (the same but for `zscore`, whose reported
normal CDF rounds to 1.0 for several chunks that its raw sum still tells apart)."""


class HybridConfig(StrictModel):
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="Weight of the vector side.")
    fusion: Literal["weighted", "zscore", "minmax", "rrf"] = "weighted"
    rrf_k: int = Field(default=60, ge=1)
    candidates: int = Field(default=100, ge=1, le=MAX_TOP_K)
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)
    distance_metric: DistanceMetric | None = None


@dataclass(frozen=True)
class Side:
    """One ranked list: its weight, its scores by chunk, and the score of a chunk it lacks."""

    weight: float
    scores: dict[str, float]
    fill: float


class HybridUniversalStrategy:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = parse_config(HybridConfig, config, what="HybridUniversalStrategy")
        self.default_top_k = self.config.top_k

    def retrieve(self, search: Search, query: str, *, top_k: int) -> list[Hit]:
        alpha = self.config.alpha if search.hybrid_alpha is None else search.hybrid_alpha
        wanted = max(self.config.candidates, top_k)
        if alpha == 1:
            return search.nearest(query, top_k=top_k, metric=self.config.distance_metric)
        # Both sides at once: BM25 runs while the query is embedded.
        words = (
            None
            if search.pool is None
            else search.pool.submit(search.keywords, query, top_k=wanted)
        )
        vector: list[Hit] = []
        if alpha > 0:
            # Only the few chunks kept need their texts: read below, not for every candidate.
            vector = search.nearest(
                query, top_k=wanted, metric=self.config.distance_metric, texts=False
            )
        lexical = search.keywords(query, top_k=wanted) if words is None else words.result()
        sides = [
            # A chunk the lexical side lacks shares no term with the query (BM25 0) unless
            # the list was cut at `wanted`; one the vector side lacks is below its last.
            Side(1 - alpha, _scores(lexical), 0.0 if len(lexical) < wanted else _low(lexical)),
            Side(alpha, _scores(vector), _low(vector)),
        ]
        if self.config.fusion != "weighted":  # the relative fusions rank what was returned
            sides = [side for side in sides if side.scores]
        fused = FUSIONS[self.config.fusion](sides, self.config)
        ranked = sorted(fused.items(), key=lambda item: (-item[1][0], item[0]))
        return _with_texts(search, [(i, score) for i, (_, score) in ranked], lexical, top_k)


def _with_texts(
    search: Search, ranked: Sequence[tuple[str, float]], lexical: Sequence[Hit], top_k: int
) -> list[Hit]:
    """The first `top_k` of `ranked` with their texts: the lexical side's hits have theirs, the
    others are fetched from the store. One that a write removed since the vector index was
    loaded has none, and the next in line takes its place."""
    known = {hit.id: hit for hit in lexical}
    hits: list[Hit] = []
    start = 0
    while len(hits) < top_k and start < len(ranked):
        batch = ranked[start : start + top_k - len(hits)]
        start += len(batch)
        found = search.store.fetch([i for i, _ in batch if i not in known])
        for i, score in batch:
            chunk = known.get(i) or found.get(i)
            if chunk is not None:
                hits.append(Hit(id=i, text=chunk.text, metadata=chunk.metadata, score=score))
    return hits


def weighted(sides: Sequence[Side], config: HybridConfig) -> Fused:
    """The weighted mean of the sides' own scores (their fill for a chunk they lack)."""
    chunks = {chunk for side in sides for chunk in side.scores}
    total = sum(side.weight for side in sides) or 1.0
    return _same(
        {
            chunk: sum(side.weight * side.scores.get(chunk, side.fill) for side in sides) / total
            for chunk in chunks
        }
    )


def zscore(sides: Sequence[Side], config: HybridConfig) -> Fused:
    """Each side standardised over all candidates (its fill for those it lacks), summed."""
    chunks = sorted({chunk for side in sides for chunk in side.scores})
    fused = dict.fromkeys(chunks, 0.0)
    spread = math.sqrt(sum(side.weight**2 for side in sides)) or 1.0
    for side in sides:
        values = [side.scores.get(chunk, side.fill) for chunk in chunks]
        mean, deviation = statistics.fmean(values), statistics.pstdev(values)
        for chunk, value in zip(chunks, values, strict=True):
            if deviation > 0:
                fused[chunk] += side.weight * (value - mean) / deviation
    if len(sides) == 1 and len(chunks) == 1:
        return dict.fromkeys(chunks, (1.0, 1.0))  # the only match
    normal = statistics.NormalDist()
    return {chunk: (total, normal.cdf(total / spread)) for chunk, total in fused.items()}


def minmax(sides: Sequence[Side], config: HybridConfig) -> Fused:
    """Each side scaled from its fill (0) to its best (1), weighted and summed."""
    chunks = {chunk for side in sides for chunk in side.scores}
    total = sum(side.weight for side in sides) or 1.0
    fused = dict.fromkeys(chunks, 0.0)
    for side in sides:
        low, high = min(side.fill, *side.scores.values()), max(side.scores.values())
        for chunk, value in side.scores.items():
            fused[chunk] += side.weight * ((value - low) / (high - low) if high > low else 1.0)
    return _same({chunk: value / total for chunk, value in fused.items()})


def rrf(sides: Sequence[Side], config: HybridConfig) -> Fused:
    """Weighted reciprocal rank, divided by the best possible (first on every side)."""
    fused: dict[str, float] = {}
    best = sum(side.weight for side in sides) / (config.rrf_k + 1)
    for side in sides:
        ranked = sorted(side.scores, key=lambda chunk: -side.scores[chunk])
        for rank, chunk in enumerate(ranked, start=1):
            fused[chunk] = fused.get(chunk, 0.0) + side.weight / (config.rrf_k + rank)
    return _same({chunk: score / best for chunk, score in fused.items()} if best else fused)


FUSIONS: dict[str, Callable[[Sequence[Side], HybridConfig], Fused]] = {
    "weighted": weighted,
    "zscore": zscore,
    "minmax": minmax,
    "rrf": rrf,
}


def _same(scores: dict[str, float]) -> Fused:
    return {chunk: (score, score) for chunk, score in scores.items()}


def _scores(hits: Sequence[Hit]) -> dict[str, float]:
    return {hit.id: hit.score for hit in hits}


def _low(hits: Sequence[Hit]) -> float:
    return min((hit.score for hit in hits), default=0.0)
