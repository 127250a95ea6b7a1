"""The example catalog on disk: listing, sizes, datasets, and folders that are not usable."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llamafarm.errors import InvalidName, NotFound
from llamafarm.examples import catalog
from tests.examples.builders import GARDEN, QUESTION, data_size, project_size, write_example


def test_summary_sizes_and_newest_mtime(tmp_path: Path) -> None:
    folder = write_example(tmp_path)
    for path in folder.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    os.utime(folder / "files/tools/shears.txt", (1_700_000_000, 1_700_003_600))

    [example] = catalog.list_examples(tmp_path)
    summary = catalog.summary(example)

    assert summary == catalog.ExampleSummary(
        id="garden",
        slug="garden",
        title="The garden example",
        description="Notes from a kitchen garden.",
        primary_model="SmolLM2-135M-Instruct",
        tags=["rag", "garden"],
        dataset_count=2,
        data_size_bytes=data_size(),
        data_size_human=f"{data_size()}B",
        project_size_bytes=project_size(folder),
        project_size_human=f"{project_size(folder) / 1024:.1f}KB",
        updated_at="2023-11-14T23:13:20Z",
        questions=[QUESTION],
    )
    assert dt.datetime.fromisoformat(summary.updated_at).timestamp() == 1_700_003_600


def test_a_file_in_two_datasets_counts_once_in_the_data_size(tmp_path: Path) -> None:
    shared = {"files/shared.txt": b"x" * 3000}
    write_example(tmp_path, datasets={"one": shared, "two": shared})
    [example] = catalog.list_examples(tmp_path)
    assert catalog.summary(example).data_size_bytes == 3000
    assert catalog.summary(example).data_size_human == "2.9KB"
    sizes = [d.size_bytes for d in catalog.datasets(example)]
    assert sizes == [3000, 3000]


def test_datasets_lists_files_with_their_sizes(tmp_path: Path) -> None:
    write_example(tmp_path)
    listed = catalog.datasets(catalog.get_example(tmp_path, "garden"))
    herbs = GARDEN["herbs"]
    assert [d.name for d in listed] == ["herbs", "tools"]
    assert listed[0] == catalog.ExampleDatasetSummary(
        name="herbs",
        description="herbs notes",
        database="garden_db",
        data_processing_strategy="garden_processor",
        file_count=2,
        size_bytes=sum(len(c) for c in herbs.values()),
        size_human=f"{sum(len(c) for c in herbs.values())}B",
        files=[
            catalog.ExampleFile("basil.md", len(herbs["files/herbs/basil.md"])),
            catalog.ExampleFile("mint.txt", len(herbs["files/herbs/mint.txt"])),
        ],
    )


def _edit_manifest(folder: Path, change: Callable[[dict[str, object]], None]) -> None:
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    change(manifest)
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest))


def _first_files(manifest: dict[str, object]) -> list[str]:
    datasets = manifest["datasets"]
    assert isinstance(datasets, list)
    files: list[str] = datasets[0]["files"]
    return files


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "manifest is not YAML": (
        lambda f: (f / "manifest.yaml").write_text("id: [unclosed"),
        "not valid YAML",
    ),
    "manifest lacks a title": (
        lambda f: _edit_manifest(f, lambda m: m.pop("title")),
        "title: required key is missing",
    ),
    "id is not the folder's": (
        lambda f: _edit_manifest(f, lambda m: m.update(id="other")),
        "is not the folder's name",
    ),
    "a listed file is missing": (
        lambda f: (f / "files/herbs/mint.txt").unlink(),
        "no file 'files/herbs/mint.txt'",
    ),
    "a file outside the folder": (
        lambda f: _edit_manifest(f, lambda m: _first_files(m).append("../secret.txt")),
        "must be a relative path inside the example folder",
    ),
    "an absolute file path": (
        lambda f: _edit_manifest(f, lambda m: _first_files(m).append("/etc/passwd")),
        "must be a relative path inside the example folder",
    ),
    "a dataset missing from llamafarm.yaml": (
        lambda f: _edit_manifest(
            f, lambda m: m.update(datasets=[{"name": "nope", "files": ["files/herbs/basil.md"]}])
        ),
        "dataset 'nope' is not in llamafarm.yaml",
    ),
    "llamafarm.yaml does not validate": (
        lambda f: (f / "llamafarm.yaml").write_text("name: garden\nnamespace: default\n"),
        "runtime: required key is missing",
    ),
    "llamafarm.yaml is missing": (
        lambda f: (f / "llamafarm.yaml").unlink(),
        "llamafarm.yaml",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_malformed_example_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, breakage: str
) -> None:
    write_example(tmp_path, "good")
    (tmp_path / "secret.txt").write_text("outside")
    broken = write_example(tmp_path, "garden")
    breaking, reason = BREAKAGES[breakage]
    breaking(broken)

    with caplog.at_level(logging.WARNING, logger="llamafarm.examples.catalog"):
        assert [e.id for e in catalog.list_examples(tmp_path)] == ["good"]
    assert any("garden" in r.getMessage() and reason in r.getMessage() for r in caplog.records)

    with pytest.raises(NotFound, match="Example 'garden' is not usable") as raised:
        catalog.get_example(tmp_path, "garden")
    assert reason in raised.value.detail


def test_folders_that_are_not_examples(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_example(tmp_path, "good")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    shutil.copytree(tmp_path / "good", tmp_path / "bad name")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="llamafarm.examples.catalog"):
        assert [e.id for e in catalog.list_examples(tmp_path)] == ["good"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'bad name'" in m for m in messages)
    assert any("empty" in m and "manifest.yaml" in m for m in messages)
    assert not any("pycache" in m or "hidden" in m for m in messages)


def test_a_missing_root_lists_nothing(tmp_path: Path) -> None:
    assert catalog.list_examples(tmp_path / "nowhere") == []


def test_unknown_and_unsafe_ids(tmp_path: Path) -> None:
    write_example(tmp_path)
    (tmp_path / "secret").mkdir()
    with pytest.raises(NotFound, match="Example 'nope' not found"):
        catalog.get_example(tmp_path, "nope")
    for bad in ("..", "../garden", "garden/../garden", ".hidden", "a b", "x" * 65, ""):
        with pytest.raises(InvalidName, match="Invalid example id"):
            catalog.get_example(tmp_path, bad)


def test_unknown_dataset_of_an_example(tmp_path: Path) -> None:
    write_example(tmp_path)
    with pytest.raises(NotFound, match="Dataset 'nope' not found in example 'garden'"):
        catalog.get_example(tmp_path, "garden").dataset("nope")


def test_the_root_is_the_setting_or_the_bundled_folder(tmp_path: Path) -> None:
    assert catalog.examples_root(tmp_path) == tmp_path
    assert catalog.examples_root(None) == Path(catalog.__file__).parent / "data"
