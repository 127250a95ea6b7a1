"""Measure retrieval: a question set through one or more strategies of a database, scored.

Each question runs as a RAG query (`search`, as `POST …/rag/query` does) for `DEPTH` results.
With `relevant`, the results become a ranking of documents (a document ranks where its first
chunk does, matched by file name or hash); with `expected`, each phrase is a relevant item, found
at the first chunk that holds it. The rankings are scored as trec_eval (what BEIR reports)
scores them: nDCG@10 (gain = grade), Recall@10 and @100, MRR. Latency is the time of each search.

The measures are written out here rather than taken from pytrec_eval: its wheel requires scipy
(~140 MB installed) without using it, for three formulas of a few lines each; tests check them
against values computed by hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llamafarm.errors import BadRequest
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.questions import Question, normalize
from llamafarm.rag.retrieval import Strategies
from llamafarm.rag.service import QueryOptions, find_database, search
from llamafarm.rag.stores import create_store
from llamafarm.rag.stores.base import Hit, VectorStore

DEPTH = 100
"""Results asked of each query: Recall@100 needs them."""
SHOWN = 5
"""Results shown for each of the worst queries."""
EXCERPT = 200
MAX_STRATEGIES = 10
MEASURE_NAMES = ("ndcg_cut_10", "recall_10", "recall_100", "recip_rank")
"""What `measure` gives for each query, as trec_eval names them."""


@dataclass(frozen=True)
class Returned:
    """One of the first results of a query: its document, and how relevant it was judged."""

    rank: int
    document: str
    file_hash: str
    chunk_id: str
    score: float
    grade: int
    excerpt: str


@dataclass(frozen=True)
class QueryScore:
    id: str
    query: str
    ndcg_10: float
    recall_100: float
    relevant: list[str]
    """The documents (or phrases) the question names as relevant."""
    returned: list[Returned]


@dataclass(frozen=True)
class StrategyScore:
    strategy: str
    ndcg_10: float
    recall_10: float
    recall_100: float
    mrr: float
    p50_ms: float
    p95_ms: float
    worst: list[QueryScore]
    """The queries with the lowest nDCG@10 below 1, lowest first."""


@dataclass(frozen=True)
class UnknownDocument:
    question: str
    line: int
    document: str


@dataclass(frozen=True)
class Evaluation:
    database: str
    questions: int
    """Questions scored: those with `expected`, or with a relevant document the database holds."""
    skipped: list[str]
    """Ids of the questions none of whose relevant documents the database holds."""
    unknown_documents: list[UnknownDocument]
    strategies: list[StrategyScore]


def evaluate(
    *,
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    questions: Sequence[Question],
    database: str | None = None,
    strategies: Sequence[str] = (),
    worst: int = 5,
) -> Evaluation:
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    known = Strategies(chosen)
    names = list(dict.fromkeys(strategies)) or [known.default_name]
    if len(names) > MAX_STRATEGIES:
        raise BadRequest(f"At most {MAX_STRATEGIES} strategies at once")
    for name in names:
        known.check(name)
    store = create_store(
        chosen, project_dir=projects.path(ref.namespace, ref.project), clients=models.chroma
    )
    unknown = _unknown_documents(store, questions)
    missing = {(u.question, u.document) for u in unknown}
    qrels: dict[str, dict[str, int]] = {}
    for question in questions:
        judged = _qrels(question, missing)
        if any(grade > 0 for grade in judged.values()):
            qrels[question.id] = judged
    scored = [q for q in questions if q.id in qrels]
    if not scored:
        shown = ", ".join(sorted({u.document for u in unknown})[:10])
        raise BadRequest(
            f"No question names a document that database {chosen.name!r} holds "
            f"(unknown: {shown}); name documents by file name or hash"
        )
    results = [
        _run(projects, models, ref, chosen.name, name, scored, qrels, worst) for name in names
    ]
    return Evaluation(
        database=chosen.name,
        questions=len(scored),
        skipped=[q.id for q in questions if q.id not in qrels],
        unknown_documents=unknown,
        strategies=results,
    )


def measure(
    qrels: dict[str, dict[str, int]], rankings: dict[str, list[str]]
) -> dict[str, dict[str, float]]:
    """Each judged query's MEASURE_NAMES for its ranking, best first (0 for a query with no
    ranking or an empty one), as trec_eval computes them: relevant means a grade of 1 or more,
    nDCG's gain is the grade and its discount log2(rank + 1)."""
    return {qid: _measures(judged, rankings.get(qid, [])) for qid, judged in qrels.items()}


def _measures(judged: dict[str, int], ranked: list[str]) -> dict[str, float]:
    relevant = {d for d, grade in judged.items() if grade > 0}
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i for i, d in enumerate(ranked) if d in relevant), None)
    return {
        "ndcg_cut_10": dcg / idcg if idcg else 0.0,
        "recall_10": len(relevant.intersection(ranked[:10])) / len(relevant) if relevant else 0.0,
        "recall_100": len(relevant.intersection(ranked[:100])) / len(relevant) if relevant else 0.0,
        "recip_rank": 0.0 if first is None else 1 / (first + 1),
    }


def _unknown_documents(store: VectorStore, questions: Sequence[Question]) -> list[UnknownDocument]:
    """Each `relevant` name that is neither the file name nor the hash of a stored chunk."""
    held: dict[str, bool] = {}
    unknown: list[UnknownDocument] = []
    for question in questions:
        for name in question.relevant:
            if name not in held:
                held[name] = bool(store.count({"source": name}) or store.count({"file_hash": name}))
            if not held[name]:
                unknown.append(UnknownDocument(question.id, question.line, name))
    return unknown


def _qrels(question: Question, missing: set[tuple[str, str]]) -> dict[str, int]:
    if question.expected:
        return {_phrase_key(i): 1 for i in range(len(question.expected))}
    return {d: g for d, g in question.relevant.items() if (question.id, d) not in missing}


def _phrase_key(index: int) -> str:
    # Keys that are not documents start with "/", which no file name holds.
    return f"/expected/{index}"


def _ranking(question: Question, hits: Sequence[Hit]) -> list[tuple[str, Hit]]:
    """The ranked items of a query's results, each once, with the chunk that ranked it."""
    ranked: dict[str, Hit] = {}
    phrases = [normalize(p) for p in question.expected]
    found: set[int] = set()
    for hit in hits:
        if phrases:
            text = normalize(hit.text)
            index = next((i for i, p in enumerate(phrases) if i not in found and p in text), None)
            if index is not None:
                found.add(index)
            key = f"/chunk/{hit.id}" if index is None else _phrase_key(index)
        else:
            source, file_hash = _document(hit)
            key = (
                source
                if source in question.relevant
                else file_hash
                if file_hash in question.relevant
                else f"/file/{file_hash or source or hit.id}"
            )
        ranked.setdefault(key, hit)
    return list(ranked.items())


def _document(hit: Hit) -> tuple[str, str]:
    return str(hit.metadata.get("source") or ""), str(hit.metadata.get("file_hash") or "")


def _run(
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    database: str,
    strategy: str,
    questions: Sequence[Question],
    qrels: dict[str, dict[str, int]],
    worst: int,
) -> StrategyScore:
    options = QueryOptions(database=database, retrieval_strategy=strategy, top_k=DEPTH)
    rankings: dict[str, list[tuple[str, Hit]]] = {}
    latencies: list[float] = []
    for question in questions:
        started = time.perf_counter()
        hits, _, _ = search(
            projects=projects, models=models, ref=ref, queries=[question.query], options=options
        )
        latencies.append(time.perf_counter() - started)
        rankings[question.id] = _ranking(question, hits)
    per_query = measure(qrels, {qid: [key for key, _ in r] for qid, r in rankings.items()})

    def mean(name: str) -> float:
        return round(float(np.mean([per_query[q.id][name] for q in questions])), 4)

    ms = np.asarray(latencies) * 1000
    order = sorted(
        (q for q in questions if per_query[q.id]["ndcg_cut_10"] < 1.0),
        key=lambda q: (per_query[q.id]["ndcg_cut_10"], per_query[q.id]["recall_100"]),
    )
    return StrategyScore(
        strategy=strategy,
        ndcg_10=mean("ndcg_cut_10"),
        recall_10=mean("recall_10"),
        recall_100=mean("recall_100"),
        mrr=mean("recip_rank"),
        p50_ms=round(float(np.percentile(ms, 50)), 1),
        p95_ms=round(float(np.percentile(ms, 95)), 1),
        worst=[
            _query_score(q, per_query[q.id], rankings[q.id], qrels[q.id]) for q in order[:worst]
        ],
    )


def _query_score(
    question: Question,
    measured: dict[str, float],
    ranked: list[tuple[str, Hit]],
    judged: dict[str, int],
) -> QueryScore:
    returned = []
    for rank, (key, hit) in enumerate(ranked[:SHOWN], start=1):
        source, file_hash = _document(hit)
        excerpt = " ".join(hit.text.split())
        returned.append(
            Returned(
                rank=rank,
                document=source,
                file_hash=file_hash,
                chunk_id=hit.id,
                score=round(hit.score, 6),
                grade=judged.get(key, 0),
                excerpt=excerpt if len(excerpt) <= EXCERPT else excerpt[:EXCERPT] + "…",
            )
        )
    relevant = list(question.expected) or [d for d, g in question.relevant.items() if g > 0]
    return QueryScore(
        id=question.id,
        query=question.query,
        ndcg_10=round(measured["ndcg_cut_10"], 4),
        recall_100=round(measured["recall_100"], 4),
        relevant=relevant,
        returned=returned,
    )
