"""RAG API: `/v1/projects/{namespace}/{project}/rag` — queries, health and databases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from llamafarm.api.deps import (
    CeleryDep,
    ChromaClientsDep,
    ModelCacheDep,
    ProjectRefDep,
    ProjectStoreDep,
    SettingsDep,
    StateDBDep,
)
from llamafarm.api.errors import errors
from llamafarm.api.schemas.datasets import TaskAccepted
from llamafarm.api.schemas.rag import (
    DatabaseDeleted,
    DatabaseList,
    DatabasePublic,
    DatabaseResponse,
    DatabaseSummary,
    EvaluationPublic,
    QueryAnswer,
    RagCompacted,
    RagComponentHealth,
    RagDocument,
    RagHealth,
    RagImported,
    RagPreview,
    RagStats,
)
from llamafarm.datasets import archive, maintenance
from llamafarm.errors import BadRequest
from llamafarm.rag import databases, evaluation, service
from llamafarm.rag.questions import parse_questions
from llamafarm.rag.retrieval import MAX_TOP_K
from llamafarm.rag.stores.base import DistanceMetric, Hit
from llamafarm.tasks.service import queue_reindex

router = APIRouter(
    prefix="/projects/{namespace}/{project}/rag",
    tags=["rag"],
    responses=errors(400, 404, 409, 413, 422, 503),
)


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=10_000, pattern=r"\S")
    database: str | None = Field(default=None, min_length=1)
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K, description="Default 5.")
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    retrieval_strategy: str | None = Field(default=None, min_length=1)
    metadata_filters: dict[str, Any] | None = None
    distance_metric: DistanceMetric | None = None
    hybrid_alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    rerank_model: str | None = Field(default=None, min_length=1)
    query_expansion: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)


class DatabaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    embedding_strategies: list[dict[str, Any]] = Field(default_factory=list)
    retrieval_strategies: list[dict[str, Any]] = Field(default_factory=list)
    default_embedding_strategy: str | None = None
    default_retrieval_strategy: str | None = None


class DatabaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="Immutable: must match if given.")
    type: str | None = Field(default=None, description="Immutable: must match if given.")
    config: dict[str, Any] | None = None
    embedding_strategies: list[dict[str, Any]] | None = None
    retrieval_strategies: list[dict[str, Any]] | None = None
    default_embedding_strategy: str | None = None
    default_retrieval_strategy: str | None = None


@router.post(
    "/query",
    operation_id="rag_query",
    tags=["mcp"],
    summary="Query a RAG database",
    description="Search a RAG database for the chunks closest to `query`: each result has its "
    "text, score, metadata (source file, page…) and ids. `database` defaults to the project's "
    "default database, `top_k` to 5; `metadata_filters` such as "
    '{"source": "notes.md"} keep only matching chunks.',
    response_model=QueryAnswer,
)
def query(
    body: QueryRequest, ref: ProjectRefDep, projects: ProjectStoreDep, models: ModelCacheDep
) -> JSONResponse:
    options = service.QueryOptions(**body.model_dump(exclude={"query"}))
    answer = service.query(
        projects=projects, models=models, ref=ref, text=body.query, options=options
    )
    # Shaped as plain JSON here: rendering it directly skips FastAPI's validation and encoding
    # of every result against QueryAnswer (which only documents it here), about a third of
    # the HTTP cost of a query. tests/api/test_response_models.py checks the shape.
    return JSONResponse(
        {
            "query": answer.query,
            "results": [_result(hit) for hit in answer.hits],
            "total_results": len(answer.hits),
            "processing_time_ms": answer.processing_time_ms,
            "retrieval_strategy_used": answer.retrieval_strategy_used,
            "database_used": answer.database_used,
            "needs_reindex": answer.needs_reindex,
        }
    )


def _result(hit: Hit) -> dict[str, Any]:
    return {
        "content": hit.text,
        "score": round(hit.score, 6),
        "metadata": dict(hit.metadata),
        "chunk_id": hit.id,
        "document_id": hit.metadata.get("document_id"),
    }


@router.post(
    "/evaluate",
    operation_id="rag_evaluate",
    summary="Measure retrieval on a question set",
    description="The body is a question set, one JSON object per line: `query`, and either "
    "`relevant` (document file names or hashes, a list or an object of grades) or `expected` "
    "(phrases a relevant chunk holds). Each question runs as a RAG query through each "
    "`strategy` (repeatable; default the database's default) of `database`; the answer gives "
    "nDCG@10, Recall@10/@100, MRR and p50/p95 latency per strategy, the `worst` queries with "
    "what came back, and every `relevant` document the database does not hold. A malformed "
    "line is a 400 that names it.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def evaluate(
    request: Request,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    models: ModelCacheDep,
    database: Annotated[str | None, Query(min_length=1)] = None,
    strategy: Annotated[list[str] | None, Query()] = None,
    worst: Annotated[int, Query(ge=0, le=100)] = 5,
) -> EvaluationPublic:
    # The body is read raw whatever its content type: JSON lines are not one JSON document.
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The question set is not UTF-8 text ({exc})") from exc
    questions = parse_questions(text)
    result = await run_in_threadpool(
        lambda: evaluation.evaluate(
            projects=projects,
            models=models,
            ref=ref,
            questions=questions,
            database=database,
            strategies=strategy or [],
            worst=worst,
        )
    )
    return EvaluationPublic.model_validate(result, from_attributes=True)


@router.get("/health", operation_id="rag_health", summary="Health of a RAG database")
async def health(
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    models: ModelCacheDep,
    database: str | None = None,
) -> RagHealth:
    report = await service.health(projects=projects, models=models, ref=ref, database=database)
    components = {
        c.name: RagComponentHealth(
            name=c.name, status=c.status, latency=c.latency_ms, message=c.message
        )
        for c in report.components
    }
    return RagHealth(
        status=report.status,
        database=report.database,
        components=components,
        last_check=report.last_check,
        issues=report.issues,
        needs_reindex=report.needs_reindex,
    )


@router.get(
    "/stats",
    operation_id="rag_stats",
    summary="Statistics of a RAG database",
    description="Chunks, documents, bytes on disk, the embedder and the fingerprints of what "
    "is configured and of what built the stored chunks (needs_reindex when they differ), the "
    "last write and the embedding cache. `database` defaults to the project's default.",
)
def stats(
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    chroma: ChromaClientsDep,
    settings: SettingsDep,
    database: str | None = None,
) -> RagStats:
    found = maintenance.database_stats(
        projects=projects,
        db=db,
        ref=ref,
        database=database,
        chroma=chroma,
        cache_bytes=settings.embedding_cache_mb << 20,
    )
    return RagStats.model_validate(found, from_attributes=True)


@router.get(
    "/databases/{database}/documents",
    operation_id="rag_list_documents",
    summary="List the documents stored in a RAG database",
    description="The stored files of the database's datasets with their chunk counts, by file "
    "name, `limit` (1-1000, default 50) at a time from `offset`.",
)
def list_documents(
    database: str,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[RagDocument]:
    found = maintenance.list_documents(
        projects=projects, db=db, ref=ref, database=database, limit=limit, offset=offset
    )
    return [RagDocument.model_validate(d, from_attributes=True) for d in found]


@router.post(
    "/preview",
    operation_id="rag_preview",
    summary="Preview how a file is parsed and chunked",
    description="Parse and chunk one uploaded file (multipart field `file`) as a data "
    "processing strategy would (`data_processing_strategy`, else `dataset`'s, else the first "
    "dataset's), with its extractors; `chunk_size`, `chunk_overlap` and `chunk_strategy` "
    "override the parser's. Nothing is stored or embedded.",
)
def preview(
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The file, as multipart field `file`.")],
    data_processing_strategy: Annotated[str | None, Form()] = None,
    dataset: Annotated[str | None, Form()] = None,
    chunk_size: Annotated[int | None, Form()] = None,
    chunk_overlap: Annotated[int | None, Form()] = None,
    chunk_strategy: Annotated[str | None, Form()] = None,
) -> RagPreview:
    found = maintenance.preview_file(
        projects=projects,
        ref=ref,
        source=file.file,
        filename=file.filename or "",
        strategy=data_processing_strategy,
        dataset=dataset,
        overrides=maintenance.ChunkingOverrides(chunk_size, chunk_overlap, chunk_strategy),
        limit=settings.max_upload_bytes,
    )
    return RagPreview.model_validate(found, from_attributes=True)


@router.get("/databases", operation_id="database_list", summary="List RAG databases")
def list_databases(ref: ProjectRefDep, projects: ProjectStoreDep) -> DatabaseList:
    listing = databases.list_databases(projects=projects, ref=ref)
    return DatabaseList.model_validate(listing, from_attributes=True)


@router.get(
    "/databases/{database}",
    operation_id="database_get",
    tags=["mcp"],
    summary="Get a database",
    description="A RAG database's definition: type, config, embedding and retrieval "
    "strategies, defaults, and the datasets that use it.",
)
def get_database(database: str, ref: ProjectRefDep, projects: ProjectStoreDep) -> DatabasePublic:
    found = databases.get_database(projects=projects, ref=ref, name=database)
    return DatabasePublic.model_validate(found, from_attributes=True)


@router.post(
    "/databases",
    operation_id="database_create",
    tags=["mcp"],
    summary="Create a database",
    description="Add a RAG database (vector store) to the project: `name`, `type` (e.g. "
    "ChromaStore), `config`, embedding and retrieval strategies. 409 for a duplicate name, "
    "400 for an unknown store, embedder or strategy type.",
    status_code=201,
)
def create_database(
    body: DatabaseCreate, ref: ProjectRefDep, projects: ProjectStoreDep
) -> DatabaseResponse:
    created = databases.create_database(
        projects=projects, ref=ref, body=body.model_dump(exclude_unset=True)
    )
    return DatabaseResponse(database=DatabaseSummary.model_validate(created, from_attributes=True))


@router.patch(
    "/databases/{database}",
    operation_id="database_update",
    tags=["mcp"],
    summary="Update a database",
    description="Change a database's config, strategies or default strategies; only the "
    "fields given change. `name` and `type` cannot change.",
)
def update_database(
    database: str,
    body: DatabaseUpdate,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    chroma: ChromaClientsDep,
) -> DatabasePublic:
    updated = databases.update_database(
        projects=projects,
        ref=ref,
        name=database,
        changes=body.model_dump(exclude_unset=True),
        chroma=chroma,
    )
    return DatabasePublic.model_validate(updated, from_attributes=True)


@router.delete(
    "/databases/{database}",
    operation_id="database_delete",
    tags=["mcp"],
    summary="Delete a database",
    description="Remove a database from the project and, unless delete_collection=false, "
    "drop its vectors. 409 while datasets still use it.",
)
def delete_database(
    database: str,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    chroma: ChromaClientsDep,
    delete_collection: bool = True,
) -> DatabaseDeleted:
    deleted = databases.delete_database(
        projects=projects,
        ref=ref,
        name=database,
        delete_collection=delete_collection,
        chroma=chroma,
    )
    return DatabaseDeleted.model_validate(deleted, from_attributes=True)


@router.post(
    "/databases/{database}/reindex",
    operation_id="database_reindex",
    summary="Rebuild a database's index without downtime",
    description="Queue a reindex: the stored files of every dataset of the database are "
    "processed again with its configured embedder and strategies into a new collection beside "
    "the one that serves (vectors of unchanged chunks come from the embedding cache when the "
    "embedder is unchanged). Queries keep using the old collection until the new one is "
    "complete, then switch to it at once; needs_reindex is cleared and the old collection "
    "dropped. Answers 202 with a task_id (task_get shows each file's progress; task_cancel "
    "stops it and leaves the old index serving). 409 while the database is reindexed "
    "already or one of its datasets is processed.",
    status_code=202,
)
def reindex(
    database: str,
    request: Request,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
) -> TaskAccepted:
    task_id = queue_reindex(projects=projects, db=db, celery=celery, ref=ref, database=database)
    uri = request.url_for("task_get", namespace=ref.namespace, project=ref.project, task_id=task_id)
    return TaskAccepted(message="Accepted", task_uri=str(uri), task_id=task_id)


@router.get(
    "/databases/{database}/export",
    operation_id="database_export",
    summary="Export a database's chunks and vectors",
    description="A zip of `manifest.json` (format, the fingerprint and embedder that made the "
    "vectors, dimension, count), `chunks.jsonl` ({id, text, metadata} per line) and "
    "`vectors.npy` (float32, one row per line), for database_import on another project or "
    "server.",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The archive"}},
)
def export_database(
    database: str, ref: ProjectRefDep, projects: ProjectStoreDep, chroma: ChromaClientsDep
) -> FileResponse:
    path = archive.export_database(projects=projects, ref=ref, database=database, chroma=chroma)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{database}.lfrag.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.post(
    "/databases/{database}/import",
    operation_id="database_import",
    summary="Import an exported archive into a database",
    description="Store the chunks and vectors of an archive from database_export (multipart "
    "field `file`) in the database, upserted by id. 409 when the archive's vectors were made "
    "by another embedder than the database's (its fingerprint), or the database needs a "
    "reindex; 400 for a file that is not such an archive.",
)
def import_database(
    database: str,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    chroma: ChromaClientsDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The archive, as multipart field `file`.")],
) -> RagImported:
    imported = archive.import_database(
        projects=projects,
        ref=ref,
        database=database,
        source=file.file,
        limit=settings.max_upload_bytes,
        max_unzipped=settings.parse_max_unzipped_mb << 20,
        chroma=chroma,
    )
    return RagImported.model_validate(imported, from_attributes=True)


@router.post(
    "/databases/{database}/compact",
    operation_id="database_compact",
    summary="Give back the disk space of deleted chunks",
    description="Vacuum the database's store (and remove what Chroma left of collections "
    "deleted earlier, a reindex's old one), optimize and vacuum its BM25 indexes and its "
    "embedding cache; the bytes of its folder before and after.",
)
def compact_database(
    database: str, ref: ProjectRefDep, projects: ProjectStoreDep, chroma: ChromaClientsDep
) -> RagCompacted:
    found = archive.compact_database(projects=projects, ref=ref, database=database, chroma=chroma)
    return RagCompacted.model_validate(found, from_attributes=True)
