"""Which local files an upload sends: files and globs as given, folders walked recursively
and filtered by the parsers of the dataset's data processing strategy."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import err
from llamafarm.config.models import DataProcessingStrategy, ProjectConfig
from llamafarm.errors import NotFound

Accepts = Callable[[Path], bool]


def collect_files(patterns: list[str], *, accepts: Callable[[], Accepts]) -> list[Path]:
    """Files named or matched (a glob's folders are left out), then every file below each
    folder argument that `accepts()` (asked for only when there is a folder) lets through.

    Hidden files and folders (`.git`, `.DS_Store`) under a folder are never sent."""
    paths: list[Path] = []
    folders: list[Path] = []
    for pattern in patterns:
        if Path(pattern).is_dir():
            folders.append(Path(pattern))
            continue
        matches = sorted(glob.glob(pattern, recursive=True)) or [pattern]
        paths.extend(Path(m) for m in matches if not Path(m).is_dir())
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"No such file: {', '.join(missing)}")
    if folders:
        keep = accepts()
        for folder in folders:
            found = [
                p
                for p in sorted(folder.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            ]
            kept = [p for p in found if keep(p)]
            if len(kept) < len(found):
                err.print(
                    f"{folder}: {len(found) - len(kept)} file(s) no parser of the dataset "
                    "handles were left out",
                    highlight=False,
                )
            paths.extend(kept)
    if not paths:
        raise CliError("No files matched")
    return paths


def parser_filter(api: ApiClient, project: str, dataset: str) -> Accepts:
    """Whether the server would find a parser for a file, judged by name as the worker does,
    from the dataset's strategy in the project's config; everything, where that cannot be
    known here (no such dataset yet: the server then says so)."""
    from llamafarm.errors import ParseFailed
    from llamafarm.ingest.parsers import select_parser

    strategy = _strategy_of(api.get(project)["project"]["config"], dataset)
    if strategy is None:
        return lambda path: True

    def accepts(path: Path) -> bool:
        try:
            select_parser(strategy, path.name)
        except ParseFailed:
            return False
        return True

    return accepts


def _strategy_of(document: dict[str, Any], dataset: str) -> DataProcessingStrategy | None:
    """The dataset's strategy as the server resolves it (component references, built-in
    strategies); `${VAR}` placeholders stay text, which no strategy's parser choice reads."""
    try:
        config = ProjectConfig.model_validate(document)
        return config.strategy_of(config.dataset(dataset))
    except (ValidationError, NotFound, StopIteration):
        return None
