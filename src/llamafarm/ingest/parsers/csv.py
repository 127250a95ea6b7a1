"""CSV/TSV: sniff the dialect; table blocks with their titles and headers (see `tables`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, decode_text_file, finish, read_bytes
from llamafarm.ingest.parsers.tables import render_grid

_SNIFF_BYTES = 64 * 1024


class CSVParser:
    extensions: ClassVar[tuple[str, ...]] = (".csv", ".tsv")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.delimiter: str | None = config.get("delimiter") or None
        self.has_header = bool(config.get("has_header", True))
        self.encoding: str | None = config.get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        text = decode_text_file(read_bytes(path, filename), filename, encoding=self.encoding)
        try:
            rows = [
                [clean_inline(cell) for cell in row]
                for row in csv.reader(io.StringIO(text, newline=""), self._dialect(text, filename))
            ]
        except csv.Error as exc:
            raise ParseFailed(f"'{filename}' is not valid CSV: {exc}") from exc
        tables = render_grid(rows, find_header=self.has_header)
        sections = [
            Section("\n".join(t.lines), heading=t.title or None, metadata=_where(t.title))
            for t in tables
        ]
        columns = next((t.columns for t in tables if t.columns), [])
        return finish(
            sections,
            filename,
            {
                "format": "csv",
                "rows": sum(t.rows for t in tables),
                "columns": ", ".join(c for c in columns if c),
            },
        )

    def _dialect(self, text: str, filename: str) -> type[csv.Dialect] | csv.Dialect:
        if self.delimiter:
            return _with_delimiter(self.delimiter)
        if filename.lower().endswith(".tsv"):
            return csv.excel_tab
        try:
            return csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
        except csv.Error:
            return csv.excel  # one column, or too little text to tell: a plain comma file


def _with_delimiter(delimiter: str) -> type[csv.Dialect]:
    class Configured(csv.excel):
        pass

    Configured.delimiter = delimiter
    return Configured


def _where(title: str) -> dict[str, MetadataValue]:
    return {"table": title} if title else {}
