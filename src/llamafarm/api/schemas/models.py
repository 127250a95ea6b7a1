"""Bodies of the models cache routes (`/v1/models`); the download route streams SSE."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llamafarm.api.schemas.base import Public


class CachedModelPublic(Public):
    model_id: str
    size_bytes: int
    size_human: str
    last_modified: str
    revisions: list[str]
    bundled: bool
    package: str | None = Field(default=None, exclude_if=lambda value: value is None)
    """The Python package a bundled model comes from; absent for the cache's models."""
    path: str


class CachedModelList(Public):
    data: list[CachedModelPublic]


class ModelDeleted(Public):
    model_name: str
    revisions_deleted: int
    size_freed: int
    path: str


class DownloadEvent(Public):
    """One `data:` frame of the download stream (documentation only: the route streams)."""

    event: Literal["progress", "complete", "error"]
    downloaded: int | None = None
    """progress: bytes so far."""
    total: int | None = None
    """progress: bytes in all."""
    percent: float | None = None
    """progress: how far, 0 to 100."""
    model_name: str | None = None
    """complete: the model downloaded."""
    path: str | None = None
    """complete: its folder in the cache."""
    cached: bool | None = None
    """complete: true when it was there already."""
    message: str | None = None
    """error: what went wrong."""
