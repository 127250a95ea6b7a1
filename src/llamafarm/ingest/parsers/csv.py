"""CSV/TSV: sniff the dialect, take the first row as header, render rows as `col: value; ...`."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, decode_text_file, finish, read_bytes

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
        rows = [row for row in rows if any(row)]
        header: list[str] = []
        if self.has_header and len(rows) > 1:
            header, rows = rows[0], rows[1:]
        lines = [_render(row, header) for row in rows]
        return finish(
            [Section("\n".join(line for line in lines if line))],
            filename,
            {"format": "csv", "rows": len(rows), "columns": ", ".join(h for h in header if h)},
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


def _render(row: list[str], header: list[str]) -> str:
    if not header:
        return "; ".join(cell for cell in row if cell)
    parts = []
    for i, cell in enumerate(row):
        if cell:
            name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
            parts.append(f"{name}: {cell}")
    return "; ".join(parts)
