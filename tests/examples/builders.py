"""Example folders written for tests, in the layout of the bundled ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llamafarm.config import render_template

GARDEN: dict[str, dict[str, bytes]] = {
    "herbs": {
        "files/herbs/basil.md": b"# Basil\n\nBasil seedlings need fourteen hours of light a day.",
        "files/herbs/mint.txt": b"Mint spreads through runners, so grow it in a sunken pot.",
    },
    "tools": {
        "files/tools/shears.txt": b"Sharpen the pruning shears on a whetstone every March.",
    },
}
"""Dataset name -> relative path -> content of the `garden` example."""

QUESTION = "How much light do basil seedlings need?"


def write_example(
    root: Path,
    example_id: str = "garden",
    datasets: dict[str, dict[str, bytes]] | None = None,
    *,
    database: str = "garden_db",
    strategy: str = "garden_processor",
    manifest: dict[str, Any] | None = None,
) -> Path:
    """An example folder `{root}/{example_id}`: manifest, llamafarm.yaml, README and files.

    Its config is the `rag` template with the database, strategy and datasets renamed.
    """
    datasets = GARDEN if datasets is None else datasets
    folder = root / example_id
    folder.mkdir(parents=True)
    for files in datasets.values():
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
    config = render_template("rag", namespace="default", name=example_id)
    config["rag"]["default_database"] = database
    config["rag"]["databases"][0]["name"] = database
    config["rag"]["data_processing_strategies"][0]["name"] = strategy
    config["datasets"] = [
        {"name": name, "database": database, "data_processing_strategy": strategy}
        for name in datasets
    ]
    (folder / "llamafarm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    body = manifest or {
        "id": example_id,
        "title": f"The {example_id} example",
        "description": "Notes from a kitchen garden.",
        "tags": ["rag", "garden"],
        "primaryModel": "SmolLM2-135M-Instruct",
        "datasets": [
            {"name": name, "description": f"{name} notes", "files": list(files)}
            for name, files in datasets.items()
        ],
        "questions": [
            {"question": QUESTION, "expect": "fourteen hours", "file": "files/herbs/basil.md"}
        ],
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    (folder / "README.md").write_text("# Garden\n\nWritten for the tests; public domain.\n")
    return folder


def data_size(datasets: dict[str, dict[str, bytes]] = GARDEN) -> int:
    return sum(len(content) for files in datasets.values() for content in files.values())


def project_size(folder: Path) -> int:
    return sum(
        (folder / name).stat().st_size for name in ("llamafarm.yaml", "manifest.yaml", "README.md")
    )
