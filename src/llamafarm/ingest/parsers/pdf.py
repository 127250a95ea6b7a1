"""PDF: one section per page, its text as a reader sees it, OCR where the text layer fails.

pypdf checks the encryption (empty-password files open, others are refused clearly) and reads
the printed page labels; pdfplumber places the words (`pdf_layout`); pages without a usable
text layer are rendered by pypdfium2 and read by OCR (`ocr`).
"""

from __future__ import annotations

import threading
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, clean_text, finish
from llamafarm.ingest.parsers.ocr import MIN_TEXT_QUALITY, OcrBudget, OcrOptions, text_quality
from llamafarm.ingest.parsers.pdf_layout import (
    Line,
    drop_furniture,
    page_lines,
    paragraphs,
    rejoin_hyphens,
)

if TYPE_CHECKING:
    from pypdf import PdfReader

OCR_DPI = 150
"""Pages are rendered for OCR at this resolution: body text is then ~20 px high, which the
recogniser reads well; 300 dpi took 3x as long for no better text on the fixtures."""
_RENDER = threading.Lock()
"""PDFium (pypdfium2, which renders pages for OCR) is not thread-safe, and a worker parses
several files at once on threads."""
SCAN_MIN_CHARS = 20
"""A page with fewer characters of text than this over an image covering half of it is a scan
(with a stamped page number or a few OCR'd words at most) and is read by OCR."""


class PDFParser:
    extensions: ClassVar[tuple[str, ...]] = (".pdf",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.password: str = str(config.get("password") or "")
        self.ocr = OcrOptions.from_config(config)

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        import pdfplumber  # ~0.1 s with pdfminer and pypdfium2: paid by the first PDF only

        labels, title = self._inspect(path, filename)
        budget = OcrBudget(filename, self.ocr)
        layers: list[list[Line] | None] = []
        scans: dict[int, str] = {}
        try:
            with pdfplumber.open(path, password=self.password) as pdf:
                for index, page in enumerate(pdf.pages):
                    lines = page_lines(page)
                    if self._needs_ocr(page, lines):
                        with _RENDER:
                            image = page.to_image(resolution=OCR_DPI).original
                        scans[index] = rejoin_hyphens(budget.read(image))
                        layers.append(None)
                    else:
                        layers.append(lines)
                    page.close()  # pdfplumber keeps each page's objects until closed
        except ParseFailed:
            raise
        except Exception as exc:  # pdfminer raises many types on damaged files
            raise ParseFailed(f"'{filename}' is not a readable PDF: {_reason(exc)}") from exc
        texts = self._texts(layers, scans)
        if not any(texts) and self.ocr.use_ocr is False:
            raise ParseFailed(
                f"'{filename}' has no extractable text (scanned/image-only PDF?) "
                "and the parser's use_ocr is false"
            )
        sections = []
        for index, text in enumerate(texts):
            extra: dict[str, MetadataValue] = {}
            if index < len(labels):
                extra["page_label"] = labels[index]
            if index in scans:
                extra["ocr"] = True
            sections.append(Section(text, page=index + 1, metadata=extra))
        metadata: dict[str, MetadataValue] = {"format": "pdf", "pages": len(texts)}
        if scans:
            metadata["ocr_pages"] = len(scans)
        if isinstance(title, str) and clean_inline(title):
            metadata["title"] = clean_inline(title)
        return finish(sections, filename, metadata)

    def _inspect(self, path: Path, filename: str) -> tuple[list[str], object]:
        """Page labels and title, after refusing encrypted files with no usable password."""
        # Imported here, not with the module: the worker imports the parsers to choose one,
        # and only its parse processes (which preload it, sandbox.child.PRELOAD) read files.
        from pypdf import PdfReader
        from pypdf.errors import PdfReadWarning

        # pypdf warns about every repairable oddity in real-world files; anything fatal raises.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PdfReadWarning)
            try:
                reader = PdfReader(path)
                self._decrypt(reader, filename)
                labels = [clean_inline(label) for label in reader.page_labels]
                title = reader.metadata.title if reader.metadata else None
            except ParseFailed:
                raise
            except Exception as exc:  # pypdf raises many types (and KeyError etc.) on bad files
                raise ParseFailed(f"'{filename}' is not a readable PDF: {_reason(exc)}") from exc
        return labels, title

    def _decrypt(self, reader: PdfReader, filename: str) -> None:
        from pypdf import PasswordType

        if not reader.is_encrypted:
            return
        # Copy-protected PDFs are encrypted with an empty user password: they open as-is.
        if reader.decrypt(self.password) == PasswordType.NOT_DECRYPTED:
            raise ParseFailed(
                f"'{filename}' is encrypted and needs a password; "
                "remove the password and upload it again"
            )

    def _needs_ocr(self, page: Any, lines: list[Line]) -> bool:
        if self.ocr.use_ocr is not None:
            return self.ocr.use_ocr
        text = "\n".join(line.text for line in lines)
        if not text.strip():
            # An image, or text drawn as outlines; a blank page needs nothing.
            return bool(page.images or page.curves)
        if len(text) < SCAN_MIN_CHARS and _image_share(page) >= 0.5:
            return True
        return text_quality(text) < MIN_TEXT_QUALITY

    @staticmethod
    def _texts(layers: list[list[Line] | None], scans: dict[int, str]) -> list[str]:
        # Furniture is judged on the text layers only; OCR'd pages keep all they show.
        kept = iter(drop_furniture([lines for lines in layers if lines is not None]))
        texts = []
        for index, lines in enumerate(layers):
            text = scans[index] if lines is None else "\n\n".join(paragraphs(next(kept)))
            # NFKC turns the ligatures PDF fonts use (ﬁ, ﬂ) into the letters people search for.
            texts.append(clean_text(unicodedata.normalize("NFKC", text)))
        return texts


def _image_share(page: Any) -> float:
    area = float(page.width * page.height) or 1.0
    covered = sum(
        max(0.0, float(i["x1"] - i["x0"])) * max(0.0, float(i["bottom"] - i["top"]))
        for i in page.images
    )
    return covered / area


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
