"""TableExtractor: the tables a parser wrote as rows of `a | b | c` (Markdown, PPTX)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, ClassVar

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import flag, integer

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
