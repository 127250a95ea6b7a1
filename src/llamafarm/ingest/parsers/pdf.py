"""PDF with pypdf: one section per page; decrypts empty-password files, refuses the rest clearly."""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path
from typing import Any, ClassVar

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import PdfReadWarning

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, clean_text, finish


class PDFParser:
    extensions: ClassVar[tuple[str, ...]] = (".pdf",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.password: str = str((config or {}).get("password") or "")

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        # pypdf warns about every repairable oddity in real-world files; the page text is what
        # matters, and anything fatal still raises.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PdfReadWarning)
            try:
                reader = PdfReader(path)
                self._decrypt(reader, filename)
                pages = [_page_text(page) for page in reader.pages]
                title = reader.metadata.title if reader.metadata else None
            except ParseFailed:
                raise
            except Exception as exc:  # pypdf raises many types (and KeyError etc.) on bad files
                raise ParseFailed(f"'{filename}' is not a readable PDF: {_reason(exc)}") from exc
        if not any(pages):
            raise ParseFailed(
                f"'{filename}' has no extractable text (scanned/image-only PDF?); "
                "OCR is not supported"
            )
        metadata: dict[str, MetadataValue] = {"format": "pdf", "pages": len(pages)}
        if isinstance(title, str) and clean_inline(title):
            metadata["title"] = clean_inline(title)
        sections = [Section(text, page=number) for number, text in enumerate(pages, 1) if text]
        return finish(sections, filename, metadata)

    def _decrypt(self, reader: PdfReader, filename: str) -> None:
        if not reader.is_encrypted:
            return
        # Copy-protected PDFs are encrypted with an empty user password: they open as-is.
        if reader.decrypt(self.password) == PasswordType.NOT_DECRYPTED:
            raise ParseFailed(
                f"'{filename}' is encrypted and needs a password; "
                "remove the password and upload it again"
            )


def _page_text(page: PageObject) -> str:
    # NFKC turns the ligatures PDF fonts use (ﬁ, ﬂ) back into the letters people search for.
    return clean_text(unicodedata.normalize("NFKC", page.extract_text() or ""))


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
