"""Examples API: `/v1/examples` (bundled example projects and their import)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from llamafarm.api.auth import check_namespace
from llamafarm.api.deps import (
    CeleryDep,
    ChromaClientsDep,
    GrantDep,
    ProjectStoreDep,
    SettingsDep,
    StateDBDep,
)
from llamafarm.api.errors import errors
from llamafarm.api.schemas.examples import (
    ExampleDatasetList,
    ExampleDatasetPublic,
    ExampleList,
    ExamplePublic,
    ImportResult,
)
from llamafarm.examples import catalog, importer
from llamafarm.names import DEFAULT_NAMESPACE
from llamafarm.projects import ProjectRef
from llamafarm.settings import Settings

router = APIRouter(
    prefix="/examples", tags=["examples"], responses=errors(400, 404, 409, 413, 422, 503)
)


class ProjectImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(default=DEFAULT_NAMESPACE, description="Namespace of the new project.")
    name: str | None = Field(
        default=None, min_length=1, description="Project name; default: the example id."
    )
    process: bool = Field(default=True, description="Queue processing of the uploaded files.")


class DataImport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = DEFAULT_NAMESPACE
    project: str = Field(description="An existing project to add the example's data to.")
    include_strategies: bool = Field(
        default=True, description="Also add the example's data processing strategies."
    )
    process: bool = True


class DatasetImport(DataImport):
    dataset: str = Field(description="The example's dataset to add.")


@router.get("", operation_id="examples_list", summary="List example projects")
def list_examples(settings: SettingsDep) -> ExampleList:
    examples = catalog.list_examples(catalog.examples_root(settings.examples_dir))
    summaries = [catalog.summary(example) for example in examples]
    return ExampleList(
        examples=[ExamplePublic.model_validate(e, from_attributes=True) for e in summaries]
    )


@router.get(
    "/{example_id}/datasets",
    operation_id="example_datasets_list",
    summary="List an example's datasets and files",
)
def list_datasets(example_id: str, settings: SettingsDep) -> ExampleDatasetList:
    example = _example(settings, example_id)
    datasets = [
        ExampleDatasetPublic.model_validate(d, from_attributes=True)
        for d in catalog.datasets(example)
    ]
    return ExampleDatasetList(example_id=example.id, datasets=datasets)


@router.post(
    "/{example_id}/import-project",
    operation_id="example_import_project",
    summary="Import an example as a new project",
)
def import_project(
    example_id: str,
    body: ProjectImport,
    settings: SettingsDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    grant: GrantDep,
    chroma: ChromaClientsDep,
) -> ImportResult:
    check_namespace(grant, body.namespace)
    example = _example(settings, example_id)
    result = importer.import_project(
        projects=projects,
        db=db,
        celery=celery,
        example=example,
        ref=ProjectRef(body.namespace, example.id if body.name is None else body.name),
        process=body.process,
        limit=settings.max_upload_bytes,
        chroma=chroma,
    )
    return ImportResult.model_validate(result)


@router.post(
    "/{example_id}/import-data",
    operation_id="example_import_data",
    summary="Import an example's data into an existing project",
)
def import_data(
    example_id: str,
    body: DataImport,
    settings: SettingsDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    grant: GrantDep,
    chroma: ChromaClientsDep,
) -> ImportResult:
    check_namespace(grant, body.namespace)
    result = importer.import_data(
        projects=projects,
        db=db,
        celery=celery,
        example=_example(settings, example_id),
        ref=ProjectRef(body.namespace, body.project),
        include_strategies=body.include_strategies,
        process=body.process,
        limit=settings.max_upload_bytes,
        chroma=chroma,
    )
    return ImportResult.model_validate(result)


@router.post(
    "/{example_id}/import-dataset",
    operation_id="example_import_dataset",
    summary="Import one dataset of an example into an existing project",
)
def import_dataset(
    example_id: str,
    body: DatasetImport,
    settings: SettingsDep,
    projects: ProjectStoreDep,
    db: StateDBDep,
    celery: CeleryDep,
    grant: GrantDep,
    chroma: ChromaClientsDep,
) -> ImportResult:
    check_namespace(grant, body.namespace)
    result = importer.import_dataset(
        projects=projects,
        db=db,
        celery=celery,
        example=_example(settings, example_id),
        ref=ProjectRef(body.namespace, body.project),
        dataset=body.dataset,
        include_strategies=body.include_strategies,
        process=body.process,
        limit=settings.max_upload_bytes,
        chroma=chroma,
    )
    return ImportResult.model_validate(result)


def _example(settings: Settings, example_id: str) -> catalog.Example:
    return catalog.get_example(catalog.examples_root(settings.examples_dir), example_id)
