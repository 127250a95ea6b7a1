"""Models cache API: `/v1/models` (the local Hugging Face cache and the bundled models)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from llamafarm import models
from llamafarm.api.errors import errors
from llamafarm.api.schemas.models import (
    CachedModelList,
    CachedModelPublic,
    DownloadEvent,
    ModelDeleted,
)
from llamafarm.errors import LfError

router = APIRouter(
    prefix="/models", tags=["models"], responses=errors(400, 404, 409, 413, 422, 503)
)

ProviderQuery = Annotated[str, Query(description='Model provider; only "universal" has a cache.')]


class ModelDownload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = models.PROVIDER
    model_name: str = Field(min_length=1, description="A Hugging Face model id, ORG/NAME.")


_SSE_EVENT = {
    # One event of the stream, as OpenAPI describes server-sent events: its `data` is JSON.
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": DownloadEvent.model_json_schema(),
        }
    },
}


@router.get(
    "",
    operation_id="cached_models_list",
    summary="List cached and bundled models",
)
def list_models(provider: ProviderQuery = models.PROVIDER) -> CachedModelList:
    listed = [
        CachedModelPublic.model_validate(m, from_attributes=True)
        for m in models.list_models(provider=provider)
    ]
    return CachedModelList(data=listed)


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
async def download(body: ModelDownload) -> StreamingResponse:
    # Checked here, before the stream begins, so that a bad request is a plain HTTP error.
    events = models.download(body.model_name, provider=body.provider)
    return StreamingResponse(
        _frames(body.model_name, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


@router.delete(
    "/{model_name:path}", operation_id="model_delete", summary="Delete a model from the cache"
)
def delete(model_name: str, provider: ProviderQuery = models.PROVIDER) -> ModelDeleted:
    deleted = models.delete_model(model_name, provider=provider)
    return ModelDeleted.model_validate(deleted, from_attributes=True)


_DOWNLOADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lf-models")
"""Threads that follow downloads, apart from the server's default pool (they wait long)."""


async def _frames(
    model_name: str, events: Generator[dict[str, Any], None, None]
) -> AsyncIterator[str]:
    """SSE frames of the events, which a thread reads and hands to this coroutine. When the
    client goes away the thread stops reading at the next event; the download itself runs on."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def put(item: dict[str, Any] | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        try:
            for event in events:
                if stop.is_set():
                    break
                put(event)
        except LfError as exc:
            put({"event": "error", "message": exc.detail})
        except Exception as exc:  # the stream has begun: report it, then end the stream
            message = f"Downloading {model_name!r} failed: {type(exc).__name__}: {exc}"
            put({"event": "error", "message": message})
        finally:
            try:
                events.close()
            finally:
                put(None)

    loop.run_in_executor(_DOWNLOADS, pump)
    try:
        while (item := await queue.get()) is not None:
            yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
    finally:
        stop.set()
