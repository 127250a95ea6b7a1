"""`auto` and `UniversalParser`: the format's own parser, chosen by the file's suffix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import Parser


class AutoParser:
    """Dispatches to the parser whose extensions hold the file's suffix (LlamaFarm's `auto`)."""

    extensions: ClassVar[tuple[str, ...]] = ()
    """Filled by the package with every format parser's extensions."""
    formats: ClassVar[Mapping[str, type[Parser]]] = {}
    """Suffix → parser class; set by the package once every parser is registered."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        suffix = PurePosixPath(filename.replace("\\", "/").lower()).suffix
        parser = self.formats.get(suffix)
        if parser is None:
            known = ", ".join(sorted(self.formats))
            raise ParseFailed(f"No parser for '{filename}' (auto handles: {known})")
        return parser(self.config).parse(path, filename=filename)
