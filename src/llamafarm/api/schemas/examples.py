"""Bodies of the examples routes."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from llamafarm.api.schemas.base import Public


class ExamplePublic(Public):
    # Read from ExampleSummary by attribute name, sent with the reference's camelCase alias.
    model_config = ConfigDict(validate_by_name=True)

    id: str
    slug: str
    title: str
    description: str
    primary_model: str | None = Field(alias="primaryModel")
    tags: list[str]
    dataset_count: int
    data_size_bytes: int
    data_size_human: str
    project_size_bytes: int
    project_size_human: str
    updated_at: str
    questions: list[str]


class ExampleList(Public):
    examples: list[ExamplePublic]


class ExampleFile(Public):
    name: str
    size_bytes: int


class ExampleDatasetPublic(Public):
    name: str
    description: str
    database: str
    data_processing_strategy: str
    file_count: int
    size_bytes: int
    size_human: str
    files: list[ExampleFile]


class ExampleDatasetList(Public):
    example_id: str
    datasets: list[ExampleDatasetPublic]


class ImportResult(Public):
    project: str
    namespace: str
    datasets: list[str]
    task_ids: list[str]
