"""Example projects on disk: `{root}/{id}/` with `manifest.yaml`, `llamafarm.yaml` and files."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from llamafarm.config import parse_config, read_document
from llamafarm.config.loader import describe_errors
from llamafarm.config.models import Name, ProjectConfig
from llamafarm.errors import ConfigInvalid, NotFound
from llamafarm.formats import human_size, iso_time
from llamafarm.names import check_name, is_valid_name

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "data"
MANIFEST_FILE = "manifest.yaml"
CONFIG_FILE = "llamafarm.yaml"
README_FILE = "README.md"
PROJECT_FILES = (CONFIG_FILE, MANIFEST_FILE, README_FILE)


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if not value or "\\" in value or path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a relative path inside the example folder, with '/' separators")
    return value


RelativePath = Annotated[str, AfterValidator(_relative)]


class ExampleDataset(BaseModel):
    name: Name
    description: str = ""
    files: list[RelativePath] = Field(min_length=1)


class ExampleQuestion(BaseModel):
    question: str = Field(min_length=1)
    expect: str | None = None
    file: str | None = None


class Manifest(BaseModel):
    """What `manifest.yaml` says about an example; keys beyond these are ignored."""

    model_config = ConfigDict(populate_by_name=True)

    id: Name
    title: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    primary_model: str | None = Field(default=None, alias="primaryModel")
    datasets: list[ExampleDataset] = Field(min_length=1)
    questions: list[ExampleQuestion] = Field(default_factory=list)


@dataclass(frozen=True)
class Example:
    """One checked example: its manifest, its config as written and as validated."""

    folder: Path
    manifest: Manifest
    document: dict[str, Any]
    config: ProjectConfig

    @property
    def id(self) -> str:
        return self.manifest.id

    def dataset(self, name: str) -> ExampleDataset:
        for dataset in self.manifest.datasets:
            if dataset.name == name:
                return dataset
        raise NotFound(f"Dataset {name!r} not found in example {self.id!r}")

    def files(self, dataset: str) -> list[Path]:
        return [self.folder / path for path in self.dataset(dataset).files]


def examples_root(configured: Path | None) -> Path:
    """`LF_EXAMPLES_DIR` when set, else the examples shipped in the package."""
    return configured.expanduser() if configured is not None else BUNDLED_DIR


def load_example(folder: Path) -> Example:
    """Read and check one example folder; ConfigInvalid says what is wrong with it."""
    manifest_document = _read(folder / MANIFEST_FILE)
    try:
        manifest = Manifest.model_validate(manifest_document)
    except ValidationError as exc:
        raise ConfigInvalid(f"{MANIFEST_FILE}: {describe_errors(exc.errors())}") from exc
    if manifest.id != folder.name:
        raise ConfigInvalid(f"{MANIFEST_FILE}: id {manifest.id!r} is not the folder's name")
    repeated = [n for n, c in Counter(d.name for d in manifest.datasets).items() if c > 1]
    if repeated:
        raise ConfigInvalid(f"{MANIFEST_FILE}: datasets listed twice: {repeated}")
    document = _read(folder / CONFIG_FILE)
    config = parse_config(document)
    configured = {d.name for d in config.datasets}
    root = folder.resolve()
    for dataset in manifest.datasets:
        if dataset.name not in configured:
            raise ConfigInvalid(f"dataset {dataset.name!r} is not in {CONFIG_FILE}")
        for relative in dataset.files:
            path = (folder / relative).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                raise ConfigInvalid(f"dataset {dataset.name!r}: no file {relative!r}")
    return Example(folder=folder, manifest=manifest, document=document, config=config)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigInvalid(f"no {path.name}")
    try:
        return read_document(path)
    except OSError as exc:
        raise ConfigInvalid(f"{path.name} cannot be read: {exc.strerror}") from exc


def get_example(root: Path, example_id: str) -> Example:
    check_name(example_id, kind="example id")
    folder = root / example_id
    if not (folder / MANIFEST_FILE).is_file():
        raise NotFound(f"Example {example_id!r} not found")
    try:
        return load_example(folder)
    except ConfigInvalid as exc:
        log.warning("example %s is malformed: %s", example_id, exc.detail)
        raise NotFound(f"Example {example_id!r} is not usable: {exc.detail}") from exc


def list_examples(root: Path) -> list[Example]:
    """Every usable example, by id; a malformed one is logged and left out."""
    if not root.is_dir():
        return []
    examples = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        if not is_valid_name(folder.name):
            log.warning("skipping example folder %r: not a valid id", folder.name)
            continue
        try:
            examples.append(load_example(folder))
        except ConfigInvalid as exc:
            log.warning("skipping example %s: %s", folder.name, exc.detail)
    return examples


@dataclass(frozen=True)
class ExampleSummary:
    """An entry of `GET /v1/examples`."""

    id: str
    slug: str
    title: str
    description: str
    primary_model: str | None
    tags: list[str]
    dataset_count: int
    data_size_bytes: int
    data_size_human: str
    project_size_bytes: int
    project_size_human: str
    updated_at: str
    questions: list[str]


@dataclass(frozen=True)
class ExampleFile:
    name: str
    size_bytes: int


@dataclass(frozen=True)
class ExampleDatasetSummary:
    """A dataset of an example, with its files and their sizes."""

    name: str
    description: str
    database: str
    data_processing_strategy: str
    file_count: int
    size_bytes: int
    size_human: str
    files: list[ExampleFile]


def summary(example: Example) -> ExampleSummary:
    """Sizes and the newest mtime of the example's files, with its manifest's fields."""
    data = {p.resolve() for d in example.manifest.datasets for p in example.files(d.name)}
    project = [example.folder / name for name in PROJECT_FILES if (example.folder / name).is_file()]
    data_size = sum(p.stat().st_size for p in data)
    project_size = sum(p.stat().st_size for p in project)
    newest = max(p.stat().st_mtime for p in [*data, *project])
    manifest = example.manifest
    return ExampleSummary(
        id=manifest.id,
        slug=manifest.id,
        title=manifest.title,
        description=manifest.description,
        primary_model=manifest.primary_model,
        tags=manifest.tags,
        dataset_count=len(manifest.datasets),
        data_size_bytes=data_size,
        data_size_human=human_size(data_size),
        project_size_bytes=project_size,
        project_size_human=human_size(project_size),
        updated_at=iso_time(newest),
        questions=[q.question for q in manifest.questions],
    )


def datasets(example: Example) -> list[ExampleDatasetSummary]:
    """The example's datasets, as `GET /v1/examples/{id}/datasets` lists them."""
    entries = []
    configured = {d.name: d for d in example.config.datasets}
    for dataset in example.manifest.datasets:
        files = [ExampleFile(p.name, p.stat().st_size) for p in example.files(dataset.name)]
        size = sum(f.size_bytes for f in files)
        entries.append(
            ExampleDatasetSummary(
                name=dataset.name,
                description=dataset.description,
                database=configured[dataset.name].database,
                data_processing_strategy=configured[dataset.name].data_processing_strategy,
                file_count=len(files),
                size_bytes=size,
                size_human=human_size(size),
                files=files,
            )
        )
    return entries
