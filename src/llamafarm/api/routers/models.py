"""Models cache API: `/v1/models` (the local Hugging Face cache and the bundled models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from llamafarm import models
from llamafarm.api.deps import DownloadsDep, ModelCacheDep
from llamafarm.api.errors import errors
from llamafarm.api.schemas.base import sse_event
from llamafarm.api.schemas.models import (
    CachedModelList,
    CachedModelPublic,
    DownloadEvent,
    DownloadValidation,
    LoadedModelPublic,
    ModelDeleted,
    QuantizationList,
    QuantizationPublic,
)
from llamafarm.api.sse import EventStream, one_by_one
from llamafarm.models.quants import check_download, quantizations

router = APIRouter(
    prefix="/models", tags=["models"], responses=errors(400, 404, 409, 413, 422, 503)
)

ProviderQuery = Annotated[str, Query(description='Model provider; only "universal" has a cache.')]


class ModelDownload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = models.PROVIDER
    model_name: str = Field(
        min_length=1,
        description="A Hugging Face model id, ORG/NAME, or ORG/NAME:QUANT for one GGUF "
        "quantization (a GGUF repo's default file without it).",
    )


class DownloadToValidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(
        min_length=1,
        validation_alias=AliasChoices("model_name", "model_id"),
        description="ORG/NAME or ORG/NAME:QUANT (`model_id` is taken too).",
    )


_SSE_EVENT = sse_event(DownloadEvent.model_json_schema())


@router.get(
    "",
    operation_id="cached_models_list",
    summary="List cached and bundled models",
)
def list_models(cache: ModelCacheDep, provider: ProviderQuery = models.PROVIDER) -> CachedModelList:
    loaded = [
        LoadedModelPublic(
            model=r.name,
            path=r.path,
            memory_bytes=r.size_bytes,
            slots=r.details.get("slots", 1),
            context=r.details.get("context", 0),
            in_use=r.in_use,
            keep_loaded=r.pinned,
            loaded_at=r.loaded_at,
            idle_seconds=round(r.idle_seconds, 1),
        )
        for r in cache.shared.residents.loaded()
    ]
    listed = [
        CachedModelPublic.model_validate(m, from_attributes=True).model_copy(
            update={"loaded": any(_inside(r.path, m.path) for r in loaded)}
        )
        for m in models.list_models(provider=provider)
    ]
    return CachedModelList(data=listed, loaded=loaded)


def _inside(file: str, folder: str) -> bool:
    return Path(file).is_relative_to(folder)


@router.post(
    "/download",
    operation_id="model_download",
    summary="Download a model into the cache (SSE progress)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, each `data:` line one DownloadEvent as JSON.",
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        }
    },
)
async def download(body: ModelDownload, downloads: DownloadsDep) -> StreamingResponse:
    # Checked here, before the stream begins, so that a bad request is a plain HTTP error.
    events = models.download(body.model_name, provider=body.provider)
    return EventStream(one_by_one(downloads.follow(body.model_name, events)))


@router.post(
    "/validate-download",
    operation_id="model_validate_download",
    summary="Check a model id before downloading: repo, quantization, disk space",
)
async def validate_download(body: DownloadToValidate) -> DownloadValidation:
    # Asks the Hub (blocking, up to its timeout): off the event loop.
    checked = await run_in_threadpool(check_download, body.model_name)
    return DownloadValidation.model_validate(checked, from_attributes=True)


@router.get(
    "/{model_id:path}/quantizations",
    operation_id="model_quantizations",
    summary="List a Hugging Face repo's GGUF files with sizes and quantizations",
)
async def list_quantizations(model_id: str) -> QuantizationList:
    found = await run_in_threadpool(quantizations, model_id)
    return QuantizationList(
        options=[QuantizationPublic.model_validate(q, from_attributes=True) for q in found]
    )


@router.delete(
    "/{model_name:path}", operation_id="model_delete", summary="Delete a model from the cache"
)
def delete(model_name: str, provider: ProviderQuery = models.PROVIDER) -> ModelDeleted:
    deleted = models.delete_model(model_name, provider=provider)
    return ModelDeleted.model_validate(deleted, from_attributes=True)
