"""Bodies of the RAG routes: queries, health and databases."""

from __future__ import annotations

from typing import Any

from pydantic import Field

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
    needs_reindex: bool = Field(
        description="The database's embedder changed since its index was built: these "
        "results come from the old index (see rag/health)."
    )


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
    needs_reindex: bool = Field(
        description="The database's embedder changed since its chunks were stored: queries "
        "use the old index; processing is refused until its chunks are cleared (`lf rag clear`)."
    )


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


class EmbedderInfo(Public):
    strategy: str
    type: str
    model: str | None


class EmbeddingCacheInfo(Public):
    entries: int
    size_bytes: int
    max_bytes: int


class RagStats(Public):
    """LlamaFarm's `rag/stats` fields, with the index's fingerprint and embedding cache."""

    database: str
    vector_count: int
    document_count: int
    chunk_count: int
    collection_size_bytes: int
    index_size_bytes: int
    embedding_dimension: int
    distance_metric: str
    last_updated: str | None
    embedder: EmbedderInfo
    fingerprint: str
    index_fingerprint: str | None
    needs_reindex: bool
    embedding_cache: EmbeddingCacheInfo
    datasets: list[str]


class RagImported(Public):
    database: str
    fingerprint: str
    imported_chunks: int
    total_chunks: int
    """The database's chunks after the import."""


class RagCompacted(Public):
    database: str
    bytes_before: int
    bytes_after: int


class RagDocument(Public):
    id: str
    filename: str
    chunk_count: int
    size_bytes: int
    parser_used: str
    date_ingested: str
    metadata: dict[str, Any]


class ChunkPreview(Public):
    chunk_index: int
    content: str
    char_count: int
    word_count: int
    metadata: dict[str, Any]


class RagPreview(Public):
    filename: str
    size_bytes: int
    data_processing_strategy: str
    parser_used: str
    chunk_strategy: str
    chunk_size: int
    chunk_overlap: int
    total_chunks: int
    avg_chunk_size: float
    chunks: list[ChunkPreview]


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
