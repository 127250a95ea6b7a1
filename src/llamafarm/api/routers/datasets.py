"""Datasets API: `/v1/projects/{namespace}/{project}/datasets`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llamafarm.api.deps import (
    CeleryDep,
    ChromaClientsDep,
    ProjectRefDep,
    ProjectStoreDep,
    SettingsDep,
    StateDBDep,
)
from llamafarm.api.errors import errors
from llamafarm.api.schemas.datasets import (
    DatasetChunksDeleted,
    DatasetList,
    DatasetResponse,
    FileChunksDeleted,
    FileRemoved,
    FileUploaded,
    StrategiesList,
    TaskAccepted,
)
from llamafarm.datasets import maintenance, service
from llamafarm.errors import BadRequest
from llamafarm.tasks.service import queue_processing

router = APIRouter(
    prefix="/projects/{namespace}/{project}/datasets",
    tags=["datasets"],
    responses=errors(400, 404, 409, 413, 422, 503),
)


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    data_processing_strategy: str
    database: str


class DatasetAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_type: Literal["process", "ingest", "delete_file_chunks", "delete_dataset_chunks"] = (
        Field(
            description='"process" (alias "ingest"); "delete_file_chunks" (with file_hash) or '
            '"delete_dataset_chunks" remove chunks and keep the files, to process again'
        )
    )
    file_hash: str | None = Field(default=None, description="The file of delete_file_chunks.")


@router.get(
    "",
    operation_id="dataset_list",
    tags=["mcp"],
    summary="List datasets",
    description="The project's datasets with their database, data processing strategy and "
    "files; include_extra_details=false leaves out the per-file details.",
)
def list_datasets(
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    include_extra_details: bool = True,
) -> DatasetList:
    datasets = service.list_datasets(
        projects=projects, db=db, ref=ref, details=include_extra_details
    )
    return DatasetList.model_validate(
        {"total": len(datasets), "datasets": datasets}, from_attributes=True
    )


@router.get(
    "/strategies",
    operation_id="dataset_strategies_list",
    tags=["mcp"],
    summary="Data processing strategies and databases",
    description="The names of the project's data processing strategies and RAG databases, "
    "as dataset_create takes them.",
)
def list_strategies(ref: ProjectRefDep, projects: ProjectStoreDep) -> StrategiesList:
    return StrategiesList.model_validate(
        service.strategies(projects=projects, ref=ref), from_attributes=True
    )


@router.post(
    "",
    operation_id="dataset_create",
    tags=["mcp"],
    summary="Create a dataset",
    description="Add a dataset to the project, tied to a database and a data processing "
    "strategy (names from dataset_strategies_list). 400 for an unknown strategy or database, "
    "409 for a duplicate.",
    status_code=201,
)
def create_dataset(
    ref: ProjectRefDep, body: DatasetCreate, projects: ProjectStoreDep
) -> DatasetResponse:
    dataset = service.create_dataset(
        projects=projects,
        ref=ref,
        name=body.name,
        database=body.database,
        strategy=body.data_processing_strategy,
    )
    return DatasetResponse.model_validate({"dataset": dataset}, from_attributes=True)


@router.delete(
    "/{dataset}",
    operation_id="dataset_delete",
    tags=["mcp"],
    summary="Delete a dataset, its chunks and files",
    description="Remove a dataset from the project's config, its chunks from its database and "
    "its files.",
)
def delete_dataset(
    ref: ProjectRefDep,
    dataset: str,
    projects: ProjectStoreDep,
    db: StateDBDep,
    chroma: ChromaClientsDep,
) -> DatasetResponse:
    deleted = service.delete_dataset(projects=projects, db=db, ref=ref, name=dataset, chroma=chroma)
    return DatasetResponse.model_validate({"dataset": deleted}, from_attributes=True)


@router.post(
    "/{dataset}/data",
    operation_id="dataset_data_upload",
    tags=["mcp"],
    summary="Upload a file to a dataset",
    description="Store one file in a dataset, addressed by its SHA-256: the same content again "
    "is reported `skipped` and stored once. Uploading processes the file only with "
    "auto_process=true, or without the parameter when the dataset's config says "
    "`auto_process: true` (the answer then has a task_id); else call dataset_actions.",
)
def upload(
    ref: ProjectRefDep,
    dataset: str,
    request: Request,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    settings: SettingsDep,
    chroma: ChromaClientsDep,
    file: Annotated[UploadFile, File(description="The file, as multipart field `file`.")],
    auto_process: bool | None = None,
) -> FileUploaded:
    stored = service.upload_file(
        projects=projects,
        db=db,
        ref=ref,
        dataset=dataset,
        source=file.file,
        filename=file.filename or "",
        limit=settings.max_upload_bytes,
    )
    uploaded = FileUploaded.model_validate(stored, from_attributes=True)
    queue = service.wants_processing(
        projects=projects, ref=ref, dataset=dataset, asked=auto_process
    )
    if queue and not stored.processed:
        task_id = queue_processing(
            projects=projects,
            db=db,
            celery=celery,
            ref=ref,
            dataset=dataset,
            file_hashes=[stored.hash],
            chroma=chroma,
        )
        uploaded.task_id, uploaded.task_uri = task_id, _task_uri(request, ref, task_id)
    return uploaded


@router.delete(
    "/{dataset}/data/{file_hash}",
    operation_id="dataset_data_delete",
    summary="Remove a file and its chunks from a dataset",
)
def remove_file(
    ref: ProjectRefDep,
    dataset: str,
    file_hash: str,
    projects: ProjectStoreDep,
    db: StateDBDep,
    chroma: ChromaClientsDep,
    remove_from_disk: bool = False,
) -> FileRemoved:
    removed = service.remove_file(
        projects=projects,
        db=db,
        ref=ref,
        dataset=dataset,
        file_hash=file_hash,
        remove_from_disk=remove_from_disk,
        chroma=chroma,
    )
    return FileRemoved.model_validate(removed, from_attributes=True)


@router.post(
    "/{dataset}/actions",
    operation_id="dataset_actions",
    tags=["mcp"],
    summary="Process (ingest) the dataset's files in the background",
    description="Queue processing (parse, chunk, embed, store) of the dataset's files with "
    '{"action_type": "process"}; files already stored with the same strategy are skipped. '
    "Answers 202 with a task_id: poll task_get until its state is final. "
    '"delete_file_chunks" (with "file_hash") and "delete_dataset_chunks" remove a file\'s or '
    "every file's chunks from the database and keep the files (to process again); they answer "
    "200 with the chunks removed.",
    status_code=202,
    response_model=TaskAccepted,
    responses={
        200: {"model": FileChunksDeleted | DatasetChunksDeleted, "description": "Chunks deleted"}
    },
)
def dataset_action(
    ref: ProjectRefDep,
    dataset: str,
    body: DatasetAction,
    request: Request,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    chroma: ChromaClientsDep,
) -> TaskAccepted | JSONResponse:
    if body.action_type == "delete_file_chunks":
        if not body.file_hash:
            raise BadRequest("file_hash is required for delete_file_chunks")
        deleted: Any = maintenance.delete_file_chunks(
            projects=projects,
            db=db,
            ref=ref,
            dataset=dataset,
            file_hash=body.file_hash,
            chroma=chroma,
        )
        return JSONResponse(
            FileChunksDeleted.model_validate(deleted, from_attributes=True).model_dump()
        )
    if body.action_type == "delete_dataset_chunks":
        deleted = maintenance.delete_dataset_chunks(
            projects=projects, db=db, ref=ref, dataset=dataset, chroma=chroma
        )
        return JSONResponse(
            DatasetChunksDeleted.model_validate(deleted, from_attributes=True).model_dump()
        )
    task_id = queue_processing(
        projects=projects, db=db, celery=celery, ref=ref, dataset=dataset, chroma=chroma
    )
    return TaskAccepted(
        message="Accepted", task_uri=_task_uri(request, ref, task_id), task_id=task_id
    )


def _task_uri(request: Request, ref: Any, task_id: str) -> str:
    return str(
        request.url_for("task_get", namespace=ref.namespace, project=ref.project, task_id=task_id)
    )
