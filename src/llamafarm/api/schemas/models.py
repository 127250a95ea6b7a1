"""Bodies of the models cache routes (`/v1/models`); the download route streams SSE."""

from __future__ import annotations

from datetime import datetime
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
    loaded: bool = False
    """Whether a chat model of this entry is loaded in the server now."""


class LoadedModelPublic(Public):
    """A local chat model loaded in the server (`loaded` of the list)."""

    model: str
    """As a config names it: the bundled name, ORG/NAME[:QUANT] or a path."""
    path: str
    """The GGUF file."""
    memory_bytes: int
    """About what it takes: the file plus the KV cache of every slot (what
    LF_MODEL_MEMORY_GB counts)."""
    slots: int
    """Generations it serves at once."""
    context: int
    """Tokens of context of each slot."""
    in_use: int
    """Generations running or waiting on it now."""
    keep_loaded: bool
    """Never unloaded (a project's `keep_loaded`)."""
    loaded_at: datetime
    idle_seconds: float


class CachedModelList(Public):
    data: list[CachedModelPublic]
    loaded: list[LoadedModelPublic] = Field(default_factory=list)
    """The local chat models loaded now (unloaded after LF_MODEL_IDLE_TTL idle seconds)."""


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


class QuantizationPublic(Public):
    """One GGUF model of a repo on the Hub (LlamaFarm's `GGUFOption`, with more)."""

    filename: str
    """Its file, or a split model's first shard."""
    quantization: str | None
    """As its name says (`Q4_K_M`); null when the name says none."""
    size_bytes: int
    """Bytes in all (every shard)."""
    size_human: str
    shards: int
    default: bool
    """Whether ORG/NAME without a quant names this one."""


class QuantizationList(Public):
    options: list[QuantizationPublic]
    """Smallest first."""


class DiskInfoPublic(Public):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent_free: float


class DownloadValidation(Public):
    """Whether a model id can be downloaded, before downloading (LlamaFarm's answer, with
    whether the repo and the quantization exist)."""

    model_name: str
    repo_exists: bool
    quantization_exists: bool
    cached: bool
    """The file the id names is in the cache already: `required_bytes` is 0."""
    files: list[str]
    """What the download would fetch."""
    required_bytes: int
    available_bytes: int
    """Free bytes on the Hugging Face cache's filesystem."""
    can_download: bool
    warning: bool
    """True when it fits but would leave under a tenth of the filesystem free."""
    message: str
    cache_info: DiskInfoPublic
    system_info: DiskInfoPublic
