"""RAG queries and health: resolve the database and strategy, search, shape the answer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamafarm.config.models import Database, ProjectConfig
from llamafarm.errors import BadRequest, ConfigInvalid, LfError, NotFound, RerankerUnavailable
from llamafarm.names import check_name
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.filters import parse_filters
from llamafarm.rag.index import IndexRecord, active_generation, reindex_message, status_of
from llamafarm.rag.index import status as index_status
from llamafarm.rag.retrieval import DEFAULT_TOP_K, Retriever, Search, Strategies, retrieve_all
from llamafarm.rag.retrieval.multi_query import MultiQueryStrategy
from llamafarm.rag.retrieval.reranked import CrossEncoderRerankedStrategy
from llamafarm.rag.stores import create_store, index_records
from llamafarm.rag.stores.base import DistanceMetric, Hit, VectorStore
from llamafarm.system.health import Check, ComponentHealth, Status, check_components, overall

CHARS_PER_TOKEN = 4
"""`max_tokens` counts tokens as about four characters, whatever the chat model's tokenizer."""
HEALTH_TIMEOUT = 10.0
SWITCH_RETRIES = 2
"""Times a query is asked again when a reindex switched collections while it ran."""


@dataclass(frozen=True)
class QueryOptions:
    """A query's knobs beyond its text; None means the strategy's or database's default."""

    database: str | None = None
    top_k: int | None = None
    score_threshold: float | None = None
    retrieval_strategy: str | None = None
    metadata_filters: Mapping[str, Any] | None = None
    distance_metric: DistanceMetric | None = None
    hybrid_alpha: float | None = None
    rerank_model: str | None = None
    query_expansion: bool | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class QueryAnswer:
    """A query's results, best first, and how they were found."""

    query: str
    hits: list[Hit]
    processing_time_ms: float
    retrieval_strategy_used: str
    database_used: str
    needs_reindex: bool
    """The database's embedder changed since its index was built: the old index answered."""


def find_database(config: ProjectConfig, name: str | None) -> Database:
    """A database by name, or the project's default (its `default_database`, else the first)."""
    databases = config.rag.databases if config.rag else []
    if name is None:
        if not databases:
            raise NotFound(f"Project {config.namespace}/{config.name} has no RAG databases")
        default = config.rag.default_database if config.rag else None
        return next((d for d in databases if d.name == default), databases[0])
    check_name(name, kind="database name")
    for database in databases:
        if database.name == name:
            return database
    known = ", ".join(d.name for d in databases) or "none configured"
    raise NotFound(
        f"Database {name!r} not found in project {config.namespace}/{config.name} "
        f"(databases: {known})"
    )


def query(
    *,
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    text: str,
    options: QueryOptions,
) -> QueryAnswer:
    started = time.perf_counter()
    hits, database, strategy, stale = _search(
        projects=projects, models=models, ref=ref, queries=[text], options=options
    )
    return QueryAnswer(
        query=text,
        hits=hits,
        processing_time_ms=round((time.perf_counter() - started) * 1000, 2),
        retrieval_strategy_used=strategy,
        database_used=database.name,
        needs_reindex=stale,
    )


def search(
    *,
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    queries: Sequence[str],
    options: QueryOptions,
) -> tuple[list[Hit], Database, str]:
    """The best chunks for one or more queries (several run at once and are merged).

    Returns the hits, the database searched and the name of the strategy used.
    """
    hits, database, strategy, _ = _search(
        projects=projects, models=models, ref=ref, queries=queries, options=options
    )
    return hits, database, strategy


def _search(
    *,
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    queries: Sequence[str],
    options: QueryOptions,
) -> tuple[list[Hit], Database, str, bool]:
    """`search`, and whether the database needs a reindex (its old index answered)."""
    texts = [q.strip() for q in queries]
    if not texts or not all(texts):
        raise BadRequest("query must not be empty")
    config = projects.load(ref.namespace, ref.project)
    database = find_database(config, options.database)
    strategies = Strategies(database)
    name = options.retrieval_strategy or strategies.default_name
    strategies.check(name)
    chosen = _wrapped(strategies, name, options, models)
    project_dir = projects.path(ref.namespace, ref.project)
    records = index_records(database, project_dir, models.chroma)
    top_k = options.top_k or chosen.default_top_k or DEFAULT_TOP_K
    for attempt in range(SWITCH_RETRIES + 1):
        record = records.read()  # one read for the generation and the index's status
        generation = record.generation if record else 0
        try:
            hits, stale = _retrieve(
                models,
                database,
                strategies,
                chosen,
                options,
                texts,
                top_k,
                create_store(
                    database, project_dir=project_dir, clients=models.chroma, generation=generation
                ),
                record,
            )
        except Exception:
            # A reindex switched collections and dropped the one this query had begun on
            # (which may fail in any way the store fails on a deleted collection): ask the
            # new one. An error with no switch behind it is the query's own.
            if attempt == SWITCH_RETRIES or active_generation(records) == generation:
                raise
            continue
        if active_generation(records) == generation:
            break  # else the old collection may have been emptied under it: ask the new one
    if options.score_threshold is not None:
        hits = [hit for hit in hits if hit.score >= options.score_threshold]
    if options.max_tokens is not None:
        hits = _within(hits, options.max_tokens)
    return hits, database, name, stale


def _retrieve(
    models: ModelCache,
    database: Database,
    strategies: Strategies,
    chosen: Retriever,
    options: QueryOptions,
    texts: list[str],
    top_k: int,
    store: VectorStore,
    record: IndexRecord | None,
) -> tuple[list[Hit], bool]:
    """The hits from one collection, and whether the database needs a reindex."""
    # While a reindex is needed, queries embed with the model that built the index.
    index = status_of(database, record, store.count)
    context = Search(
        store=store,
        embedder=models.embedder(index.serving),
        filters=parse_filters(options.metadata_filters),
        distance_metric=options.distance_metric,
        hybrid_alpha=options.hybrid_alpha,
        strategy=lambda inner: strategies.get(inner, inner=True),
        reranker=models.reranker,
        pool=models.shared.pool,
    )
    if len(texts) == 1:
        return chosen.retrieve(context, texts[0], top_k=top_k), index.needs_reindex
    return retrieve_all(context, chosen, texts, top_k=top_k), index.needs_reindex


def _wrapped(
    strategies: Strategies, name: str, options: QueryOptions, models: ModelCache
) -> Retriever:
    """The named strategy, with the query's expansion and reranking around it when asked."""
    spec, chosen = strategies.spec(name), strategies.get(name)
    reranked = spec.type == "CrossEncoderRerankedStrategy"
    named: CrossEncoderRerankedStrategy | None = None
    if options.rerank_model and reranked:
        chosen = named = CrossEncoderRerankedStrategy(
            {**spec.config, "model_name": options.rerank_model}
        )
    if options.query_expansion and spec.type != "MultiQueryStrategy":
        chosen = MultiQueryStrategy({"top_k": chosen.default_top_k}, inner=chosen)
    if options.rerank_model and not reranked:
        # After the expansion: the merged candidates of every variant are reranked together.
        top_k = options.top_k or chosen.default_top_k or DEFAULT_TOP_K
        chosen = named = CrossEncoderRerankedStrategy(
            {"model_name": options.rerank_model, "initial_k": max(30, top_k), "final_k": top_k},
            inner=chosen,
        )
    if named is not None and "base_url" not in named.model:
        _installed(models, named.model)
    return chosen


def _installed(models: ModelCache, reranker: dict[str, Any]) -> None:
    """A local rerank model that the query names must be installed. Naming one that is not is
    the client's mistake, a 404 as an unknown model is to OpenAI and Ollama, not a 503 (which
    stays for a model that the project's config names); the answer does not show where the
    server looked."""
    try:
        models.reranker(reranker).check()
    except RerankerUnavailable as exc:
        raise NotFound(
            f"Rerank model {reranker['model_name']!r} is not installed on this server"
        ) from exc


def _within(hits: list[Hit], max_tokens: int) -> list[Hit]:
    """Results in order while they fit the budget; the one that overflows it is cut short."""
    budget = max_tokens * CHARS_PER_TOKEN
    kept: list[Hit] = []
    for hit in hits:
        if budget <= 0:
            break
        text = hit.text if len(hit.text) <= budget else hit.text[:budget]
        budget -= len(text)
        kept.append(Hit(id=hit.id, text=text, metadata=hit.metadata, score=hit.score))
    return kept


@dataclass(frozen=True)
class DatabaseHealth:
    """A database's health: its vector store and its embedder, each timed."""

    status: Status
    database: str
    components: list[ComponentHealth]
    last_check: str
    needs_reindex: bool

    @property
    def issues(self) -> list[str] | None:
        """One line per component that is not healthy; None when all are."""
        return [f"{c.name}: {c.message}" for c in self.components if c.status != "healthy"] or None


async def health(
    *, projects: ProjectStore, models: ModelCache, ref: ProjectRef, database: str | None
) -> DatabaseHealth:
    config = projects.load(ref.namespace, ref.project)
    chosen = find_database(config, database)
    stale: list[bool] = []
    checks: dict[str, Check] = {
        "vector_store": _store_check(projects, models, ref, chosen),
        "embeddings": _embedder_check(models, chosen),
        "index": _index_check(projects, models, ref, chosen, stale),
    }
    components = await check_components(checks, timeout=HEALTH_TIMEOUT)
    return DatabaseHealth(
        status=overall(components),
        database=chosen.name,
        components=components,
        last_check=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        needs_reindex=any(stale),
    )


def _index_check(
    projects: ProjectStore,
    models: ModelCache,
    ref: ProjectRef,
    database: Database,
    stale: list[bool],
) -> Check:
    """Degraded while the database needs a reindex (`stale` gets True): queries still answer
    from the old index."""

    def check() -> tuple[Status, str]:
        project_dir = projects.path(ref.namespace, ref.project)
        store = create_store(database, project_dir=project_dir, clients=models.chroma)
        try:
            found = index_status(
                database, index_records(database, project_dir, models.chroma), store.count
            )
        except ConfigInvalid as exc:
            return "unhealthy", exc.detail
        if found.needs_reindex:
            stale.append(True)
            config = projects.load(ref.namespace, ref.project)
            datasets = [d.name for d in config.datasets if d.database == database.name]
            return "degraded", reindex_message(database.name, found, datasets)
        if found.record is None:
            return (
                "healthy",
                f"No index recorded yet: the next stored file records {found.fingerprint}",
            )
        return "healthy", f"Index built by the configured embedder ({found.fingerprint})"

    return check


def _store_check(
    projects: ProjectStore, models: ModelCache, ref: ProjectRef, database: Database
) -> Check:
    def check() -> tuple[Status, str]:
        project_dir = projects.path(ref.namespace, ref.project)
        store = create_store(database, project_dir=project_dir, clients=models.chroma)
        return "healthy", f"Vector store operational ({store.count()} chunks)"

    return check


def _embedder_check(models: ModelCache, database: Database) -> Check:
    def check() -> tuple[Status, str]:
        try:
            embedding = database.required_embedding()
        except ConfigInvalid as exc:
            return "unhealthy", exc.detail
        embedder = models.embedder(embedding)
        try:
            embedder.check()
        except LfError as exc:
            return "unhealthy", exc.detail
        return "healthy", f"Embedding service operational ({embedder.name})"

    return check
