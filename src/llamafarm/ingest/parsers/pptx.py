"""PowerPoint (.pptx) with python-pptx: one section per slide, shapes in reading order, notes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape
from pptx.slide import Slide

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import check_package, clean_inline, clean_text, finish


class PPTXParser:
    extensions: ClassVar[tuple[str, ...]] = (".pptx",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        check_package(path, filename, "PPTX")
        try:
            presentation = pptx.Presentation(str(path))
            sections = [
                _slide(slide, number) for number, slide in enumerate(presentation.slides, 1)
            ]
            title = presentation.core_properties.title
        except Exception as exc:  # python-pptx/lxml raise KeyError, ValueError... on broken parts
            raise ParseFailed(f"'{filename}' is not a readable PowerPoint file: {exc}") from exc
        metadata: dict[str, MetadataValue] = {
            "format": "pptx",
            "pages": len(sections),
            "title": clean_inline(title or ""),
        }
        return finish(sections, filename, metadata)


def _slide(slide: Slide, number: int) -> Section:
    title_shape = slide.shapes.title
    title = clean_text(title_shape.text_frame.text) if title_shape is not None else ""
    # Some decks put a whole text block in the title placeholder; its first line is the title.
    heading = title.split("\n", 1)[0]
    parts = [text for shape in _reading_order(slide.shapes) if (text := _shape_text(shape))]
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = clean_text(slide.notes_slide.notes_text_frame.text)
        if notes:
            parts.append(f"Notes: {notes}")
    return Section("\n\n".join(parts), page=number, heading=heading or None)


def _reading_order(shapes: Iterable[BaseShape]) -> list[BaseShape]:
    """Top to bottom, then left to right: z-order says nothing about how a slide reads."""
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape_text(shape: BaseShape) -> str:
    if isinstance(shape, GroupShape) or shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        children = _reading_order(shape.shapes)  # type: ignore[attr-defined]
        return "\n\n".join(text for child in children if (text := _shape_text(child)))
    if isinstance(shape, GraphicFrame) and shape.has_table:
        return "\n".join(_table_rows(shape))
    if shape.has_text_frame:
        return clean_text(shape.text_frame.text)  # type: ignore[attr-defined]
    return ""


def _table_rows(frame: GraphicFrame) -> Iterator[str]:
    for row in frame.table.rows:
        cells = [
            text for cell in row.cells if not cell.is_spanned and (text := clean_inline(cell.text))
        ]
        if cells:
            yield " | ".join(cells)
