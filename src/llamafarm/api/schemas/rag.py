"""Bodies of the RAG routes: queries, health and databases."""

from __future__ import annotations

from typing import Any

from llamafarm.api.schemas.base import Public
from llamafarm.api.schemas.system import Status


class QueryResult(Public):
    content: str
    score: float
    metadata: dict[str, Any]
    chunk_id: str
    document_id: Any
    """The chunk's `document_id` metadata, or null when it has none."""


class QueryAnswer(Public):
    query: str
    results: list[QueryResult]
    total_results: int
    processing_time_ms: float
    retrieval_strategy_used: str
    database_used: str


class RagComponentHealth(Public):
    name: str
    status: Status
    latency: float
    message: str


class RagHealth(Public):
    status: Status
    database: str
    components: dict[str, RagComponentHealth]
    last_check: str
    issues: list[str] | None


class EmbeddingStrategySummary(Public):
    name: str
    type: str
    priority: int
    is_default: bool


class RetrievalStrategySummary(Public):
    name: str
    type: str
    is_default: bool


class DatabaseSummary(Public):
    name: str
    type: str
    is_default: bool
    embedding_strategies: list[EmbeddingStrategySummary]
    retrieval_strategies: list[RetrievalStrategySummary]


class DatabaseList(Public):
    databases: list[DatabaseSummary]
    default_database: str | None


class DatabaseResponse(Public):
    database: DatabaseSummary


class EmbeddingStrategyPublic(Public):
    name: str
    type: str
    config: dict[str, Any]
    priority: int


class RetrievalStrategyPublic(Public):
    name: str
    type: str
    config: dict[str, Any]
    default: bool


class DatabasePublic(Public):
    name: str
    type: str
    config: dict[str, Any]
    embedding_strategies: list[EmbeddingStrategyPublic]
    retrieval_strategies: list[RetrievalStrategyPublic]
    default_embedding_strategy: str | None
    default_retrieval_strategy: str
    dependent_datasets: list[str]


class DatabaseDeleted(Public):
    message: str
    database: DatabaseSummary
    collection_deleted: bool


class EvaluationReturned(Public):
    rank: int
    document: str
    file_hash: str
    chunk_id: str
    score: float
    grade: int
    """The grade the question gives what this result ranked (0: not relevant)."""
    excerpt: str


class EvaluationQuery(Public):
    id: str
    query: str
    ndcg_10: float
    recall_100: float
    relevant: list[str]
    returned: list[EvaluationReturned]


class EvaluationStrategy(Public):
    strategy: str
    ndcg_10: float
    recall_10: float
    recall_100: float
    mrr: float
    p50_ms: float
    p95_ms: float
    worst: list[EvaluationQuery]


class EvaluationUnknownDocument(Public):
    question: str
    line: int
    document: str


class EvaluationPublic(Public):
    database: str
    questions: int
    skipped: list[str]
    unknown_documents: list[EvaluationUnknownDocument]
    strategies: list[EvaluationStrategy]
