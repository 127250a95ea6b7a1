"""Word (.docx) with python-docx: body in order with tables interleaved, headings from styles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import docx
from docx.document import Document
from docx.oxml.ns import qn
from docx.table import Table, _Cell, _Row
from docx.text.paragraph import Paragraph

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import SectionBuilder, check_package, clean_inline, finish
from llamafarm.ingest.parsers.tables import render_table as render_grid_table

Block = Paragraph | Table


class DocxParser:
    extensions: ClassVar[tuple[str, ...]] = (".docx",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        check_package(path, filename, "DOCX")
        try:
            document = docx.Document(str(path))
            header, footer = _margins(document)
            builder = SectionBuilder()
            for block in document.iter_inner_content():
                if isinstance(block, Table):
                    builder.add(render_table(block))
                elif _is_heading(block):
                    builder.heading(block.text)
                else:
                    builder.add(block.text)
            body = builder.build()
            title = document.core_properties.title
        except Exception as exc:  # python-docx/lxml raise KeyError, ValueError... on broken parts
            raise ParseFailed(f"'{filename}' is not a readable Word document: {exc}") from exc
        sections = [Section(header), *body, Section(footer)]
        metadata: dict[str, MetadataValue] = {"format": "docx", "title": clean_inline(title or "")}
        return finish(sections, filename, metadata)


def _is_heading(paragraph: Paragraph) -> bool:
    style = paragraph.style.name if paragraph.style is not None else ""
    return bool(style) and (style.startswith("Heading") or style == "Title")


def _margins(document: Document) -> tuple[str, str]:
    """Header and footer text, each distinct part once however many sections repeat it."""
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for part, into in (
            (section.first_page_header, headers),
            (section.header, headers),
            (section.even_page_header, headers),
            (section.first_page_footer, footers),
            (section.footer, footers),
            (section.even_page_footer, footers),
        ):
            if part.is_linked_to_previous:
                continue  # the same text as the section before (or no definition at all)
            text = "\n\n".join(_block_text(part.iter_inner_content())).strip()
            if text and text not in into:
                into.append(text)
    return "\n\n".join(headers), "\n\n".join(footers)


def _block_text(blocks: Iterable[Block]) -> Iterator[str]:
    for block in blocks:
        yield render_table(block) if isinstance(block, Table) else block.text


def render_table(table: Table) -> str:
    """One line per data row naming its columns (see `tables`): a merged cell fills the grid
    cells it covers, rows marked "repeat as header row" are the header."""
    grid: list[list[str]] = []
    joined: set[tuple[int, int]] = set()
    header_rows = 0
    texts: dict[Any, str] = {}  # keyed by the <w:tc> element, which keeps its proxy alive
    for r, row in enumerate(table.rows):
        line: list[str] = []
        previous = None
        for cell in row.cells:
            key = cell._tc
            if key not in texts:
                texts[key] = _cell_text(cell)
            if key is previous:
                joined.add((r, len(line)))
            line.append(texts[key])
            previous = key
        grid.append(line)
        if header_rows == r and _repeats_as_header(row):
            header_rows += 1
    return "\n".join(
        render_grid_table(grid, header_rows=header_rows or None, joined=frozenset(joined)).lines
    )


def _repeats_as_header(row: _Row) -> bool:
    properties = row._tr.trPr
    marker = properties.find(qn("w:tblHeader")) if properties is not None else None
    return marker is not None and marker.get(qn("w:val")) not in ("0", "false", "off")


def _cell_text(cell: _Cell) -> str:
    parts = []
    for block in cell.iter_inner_content():
        if isinstance(block, Table):
            parts.append("; ".join(render_table(block).split("\n")))
        else:
            parts.append(block.text)
    return clean_inline(" ".join(parts))
