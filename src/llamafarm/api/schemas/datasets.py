"""Bodies of the datasets routes."""

from __future__ import annotations

from pydantic import Field

from llamafarm.api.schemas.base import Public


def _absent(value: object) -> bool:
    return value is None


class FileDetails(Public):
    hash: str
    original_filename: str
    size: int
    timestamp: float
    processed: bool
    chunks: int


class DatasetDetails(Public):
    total_files: int
    total_size_bytes: int
    file_details: list[FileDetails]


class DatasetPublic(Public):
    name: str
    database: str
    data_processing_strategy: str
    files: list[str]
    """The SHA-256 of each file."""
    details: DatasetDetails | None = Field(default=None, exclude_if=_absent)
    """Absent (not null) when include_extra_details=false, and on create and delete."""


class DatasetList(Public):
    total: int
    datasets: list[DatasetPublic]


class DatasetResponse(Public):
    dataset: DatasetPublic


class StrategiesList(Public):
    data_processing_strategies: list[str]
    databases: list[str]


class FileUploaded(Public):
    filename: str
    hash: str
    processed: bool
    skipped: bool
    size: int
    task_id: str | None = Field(default=None, exclude_if=_absent)
    """Absent unless auto_process=true queued the file."""
    task_uri: str | None = Field(default=None, exclude_if=_absent)
    """Absent unless auto_process=true queued the file."""


class FileRemoved(Public):
    file_hash: str
    chunks_removed: int
    removed_from_disk: bool


class TaskAccepted(Public):
    message: str
    task_uri: str
    task_id: str


class FileChunksDeleted(Public):
    message: str
    file_hash: str
    deleted_chunks: int


class DatasetChunksDeleted(Public):
    message: str
    total_deleted_chunks: int
    total_files_cleared: int
    total_files_failed: int
