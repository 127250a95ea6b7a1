"""Word (.docx) with python-docx: body in order with tables interleaved, headings from styles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import docx
from docx.document import Document
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import SectionBuilder, check_package, clean_inline, finish

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
    """One line per row, cells joined by ` | `; merged cells once, nested tables inline."""
    lines = []
    for row in table._tbl.tr_lst:
        cells = []
        for tc in row.tc_lst:
            if tc.vMerge == "continue":
                continue  # the lower part of a vertically merged cell: its text is above
            text = _cell_text(_Cell(tc, table))
            if text:
                cells.append(text)
        if cells:
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _cell_text(cell: _Cell) -> str:
    parts = []
    for block in cell.iter_inner_content():
        if isinstance(block, Table):
            rows = render_table(block).split("\n")
            parts.append("; ".join(row.replace(" | ", ", ") for row in rows))
        else:
            parts.append(block.text)
    return clean_inline(" ".join(parts))
