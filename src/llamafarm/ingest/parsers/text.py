"""Plain text files (.txt, .log): one section of cleaned text in whatever encoding it was saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import ParsedDocument, Section
from llamafarm.ingest.parsers.base import clean_text, decode_text_file, finish, read_bytes


class TextParser:
    extensions: ClassVar[tuple[str, ...]] = (".txt", ".text", ".log")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.encoding: str | None = (config or {}).get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        raw = read_bytes(path, filename)
        text = clean_text(decode_text_file(raw, filename, encoding=self.encoding))
        return finish([Section(text)], filename, {"format": "text"})
