"""The examples shipped in the package: each is usable, and what its questions expect is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llamafarm.examples import catalog
from llamafarm.ingest.parsers import parse_file, select_parser
from llamafarm.ingest.pipeline import plan
from llamafarm.rag.retrieval import Strategies

FOLDERS = (
    sorted(
        p for p in catalog.BUNDLED_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if catalog.BUNDLED_DIR.is_dir()
    else []
)


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def test_every_bundled_folder_is_listed() -> None:
    assert FOLDERS, "no examples in src/llamafarm/examples/data"
    listed = [e.id for e in catalog.list_examples(catalog.BUNDLED_DIR)]
    assert listed == [p.name for p in FOLDERS]


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_bundled_example(folder: Path) -> None:
    example = catalog.load_example(folder)  # manifest, id, files, datasets, llamafarm.yaml
    assert (folder / "README.md").is_file()
    assert (example.config.namespace, example.config.name) == ("default", folder.name)
    assert example.manifest.questions

    texts: dict[str, str] = {}
    for dataset in example.manifest.datasets:
        resolved = plan(example.config, dataset.name)  # strategy, database and embedder exist
        Strategies(resolved.database).check()
        for relative, path in zip(dataset.files, example.files(dataset.name), strict=True):
            parser = select_parser(resolved.strategy, path.name)
            text = parse_file(parser, path, filename=path.name).text
            assert text.strip(), f"{relative} yields no text"
            texts[relative] = _words(text)

    for question in example.manifest.questions:
        assert question.file in texts, f"{question.file} is not in a dataset"
        assert question.expect, question.question
        assert _words(question.expect) in texts[question.file], question.question
