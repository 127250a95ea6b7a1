"""TableExtractor: the tables a parser wrote, as rows of `a | b | c` (Markdown, PPTX) or as rows
that name their columns, `Title — Name: value; Name: value` (XLSX, CSV, HTML, DOCX: see
`ingest/parsers/tables.py`)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, ClassVar

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import flag, integer
from llamafarm.ingest.parsers.tables import TITLE_SEPARATOR

FORMATS = ("dict", "list", "csv", "markdown")
_RULE = set("|-: ")


class TableExtractor:
    """`table_count`, `table_rows` and the tables themselves in `output_format` (`tables`)."""

    options: ClassVar[frozenset[str]] = frozenset(
        {"output_format", "extract_headers", "min_rows", "enabled"}
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.format = str(config.get("output_format", "dict"))
        if self.format not in FORMATS:
            raise ConfigInvalid(
                f"TableExtractor output_format {self.format!r} (known: {', '.join(FORMATS)})"
            )
        self.headers = flag(config, "extract_headers", True)
        self.min_rows = integer(config, "min_rows", 2)
        self.enabled = flag(config, "enabled", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        tables = (
            [t for t in tables_in(chunk.text) if len(t) >= self.min_rows] if self.enabled else []
        )
        if not tables:
            return {}
        return {
            "table_count": len(tables),
            "table_rows": sum(len(t) for t in tables),
            "tables": "\n\n".join(self._render(t) for t in tables),
        }

    def _render(self, rows: list[list[str]]) -> str:
        if self.format == "markdown":
            lines = [f"| {' | '.join(r)} |" for r in rows]
            lines.insert(1, "|" + "---|" * len(rows[0]))
            return "\n".join(lines)
        if self.format == "csv":
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            return out.getvalue().strip()
        if self.format == "dict" and self.headers:
            header, body = rows[0], rows[1:]
            return json.dumps(
                [dict(zip(header, row, strict=False)) for row in body], ensure_ascii=False
            )
        return json.dumps(rows, ensure_ascii=False)


def tables_in(text: str) -> list[list[list[str]]]:
    """The tables of a text, each a header row and its rows: runs of consecutive lines holding
    `|` with the same number of cells, then runs of consecutive named rows."""
    return [*_bar_tables(text), *_named_tables(text)]


def _named_row(line: str) -> list[tuple[str, str]] | None:
    """`Title — Name: value; Name: value` as its (name, value) pairs; None for a line of
    prose (fewer than two pairs)."""
    body = line.split(TITLE_SEPARATOR, 1)[-1]
    pairs = [part.partition(": ") for part in body.split("; ")]
    if len(pairs) < 2 or any(not sep or not name.strip() for name, sep, _ in pairs):
        return None
    return [(name.strip(), value.strip()) for name, _, value in pairs]


def _named_tables(text: str) -> list[list[list[str]]]:
    """Runs of named rows; their header is every name in the order first seen."""
    tables: list[list[list[str]]] = []
    run: list[list[tuple[str, str]]] = []
    for line in [*text.split("\n"), ""]:
        row = _named_row(line.strip())
        if row is not None:
            run.append(row)
            continue
        if run:
            header = list(dict.fromkeys(name for row in run for name, _ in row))
            values = [dict(row) for row in run]
            tables.append([header, *([v.get(name, "") for name in header] for v in values)])
        run = []
    return tables


def _bar_tables(text: str) -> list[list[list[str]]]:
    """Runs of consecutive lines holding `|` with the same number of cells."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.split("\n"), ""]:
        stripped = line.strip()
        if "|" in stripped and set(stripped) <= _RULE:
            continue  # a Markdown rule under the header
        cells = [c.strip() for c in stripped.strip("|").split("|")] if "|" in stripped else []
        if cells and (not current or len(cells) == len(current[0])):
            current.append(cells)
            continue
        if len(current) >= 1 and len(current[0]) > 1:
            tables.append(current)
        current = [cells] if cells else []
    return tables
