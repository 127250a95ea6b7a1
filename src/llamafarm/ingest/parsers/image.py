"""Images of text (scans, photos, screenshots), read by OCR: one section per page or frame."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageOps, UnidentifiedImageError

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_text, finish
from llamafarm.ingest.parsers.ocr import OcrBudget, OcrOptions
from llamafarm.ingest.parsers.pdf_layout import rejoin_hyphens

MAX_PIXELS = 50_000_000
"""Larger images (a 50-megapixel photo is ~200 MB decoded) are refused before decoding."""
_MULTI_PAGE = frozenset({"TIFF"})
"""Formats whose frames are pages; of the others (an animated WebP) only the first frame counts."""


class ImageParser:
    extensions: ClassVar[tuple[str, ...]] = (
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
        ".webp",
        ".bmp",
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.ocr = OcrOptions.from_config(config or {})

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        if self.ocr.use_ocr is False:
            raise ParseFailed(f"'{filename}' is an image, read only by OCR; use_ocr is false")
        budget = OcrBudget(filename, self.ocr)
        sections = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    kind = str(image.format)
                    frames = getattr(image, "n_frames", 1) if kind in _MULTI_PAGE else 1
                    for frame in range(frames):
                        image.seek(frame)
                        if image.width * image.height > MAX_PIXELS:
                            raise ParseFailed(
                                f"'{filename}' is {image.width}x{image.height} pixels; "
                                f"images over {MAX_PIXELS // 1_000_000} megapixels are refused"
                            )
                        upright = ImageOps.exif_transpose(image)  # phone photos lie on their side
                        text = clean_text(rejoin_hyphens(budget.read(upright)))
                        sections.append(Section(text, page=frame + 1, metadata={"ocr": True}))
        except ParseFailed:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ParseFailed(f"'{filename}' is too large an image to read: {exc}") from exc
        except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
            raise ParseFailed(f"'{filename}' is not a readable image: {exc}") from exc
        metadata: dict[str, MetadataValue] = {
            "format": kind.lower(),
            "pages": len(sections),
            "ocr_pages": len(sections),
        }
        if not any(s.text for s in sections):
            raise ParseFailed(f"'{filename}' has no text that OCR could read")
        return finish(sections, filename, metadata)
