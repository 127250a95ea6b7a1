"""Documents, chunks and their metadata: what `ingest` produces and `rag` stores."""

from __future__ import annotations

from dataclasses import dataclass, field

MetadataValue = str | int | float | bool
"""Metadata values are scalars so every vector store can filter on them."""


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document."""

    text: str
    page: int | None = None
    """1-based page (PDF), slide (PPTX) or sheet (XLSX) number, where the format has one."""
    heading: str | None = None
    """The nearest heading above the text (Markdown, DOCX, HTML, EPUB chapter, XLSX sheet name)."""
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    """Facts every chunk of this section carries: a sheet's name and table title, an e-mail's
    headers, the attachment a section was read from, a PDF page's `page_label`, `ocr: true`."""


@dataclass
class ParsedDocument:
    sections: list[Section]
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    """Document-level facts, e.g. `{"format": "pdf", "pages": 3, "title": "..."}`."""

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass
class Chunk:
    text: str
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
