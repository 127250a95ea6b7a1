"""OCR of page and photo images with RapidOCR, offline; and the score that says a text layer is
garbage and needs it.

`rapidocr-onnxruntime` (Apache-2.0) ships PaddleOCR's PP-OCRv4 detection and recognition models
and its orientation classifier inside its wheel and runs them with onnxruntime: nothing is
downloaded. The recognition model reads Chinese and Latin script (English and other languages
without diacritics read best; accented letters often lose their accents).
"""

from __future__ import annotations

import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageFilter

from llamafarm.errors import ParseFailed

MAX_OCR_PAGES = 100
"""Pages (PDF pages or image frames) one file may have read by OCR; `ocr_max_pages` overrides."""
OCR_TIMEOUT_S = 300.0
"""Seconds of OCR one file may use; `ocr_timeout_s` overrides."""
MIN_TEXT_QUALITY = 0.6
"""A text layer scoring below this (`text_quality`) is read again by OCR. Measured on the
fixtures: real text layers score 0.93-1.0, mojibake and `(cid:N)` layers 0.0-0.3."""
MIN_SCORE = 0.5
"""Recognised lines less confident than this are dropped (RapidOCR's own default)."""

_engine: Any = None
_engine_lock = threading.Lock()
_run_lock = threading.Lock()

# A plausible word: letters (any script) with inner apostrophes/hyphens/periods, or a number.
_WORD = re.compile(r"(?:[^\W\d_]+(?:['\u2019.\-][^\W\d_]+)*|\d+(?:[.,:/\-]\d+)*%?)")
# Quotes, brackets, bullets and dashes around a word.
_EDGE = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb()[]{}<>.,;:!?*\u2022\u2013\u2014-/"
# UTF-8 read as Latin-1/cp1252 (mojibake) and pdfminer's marks for glyphs it cannot map.
_MOJIBAKE = re.compile(r"[ÃÂâ][\u0080-\u00bf\u0152-\u2122]|\(cid:\d+\)|\ufffd")
_LATIN_VOWELS = frozenset("aeiouyAEIOUY")
_CJK = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH"})


@dataclass
class OcrOptions:
    """What a parser's config says about OCR (`use_ocr`, `ocr_max_pages`, `ocr_timeout_s`)."""

    use_ocr: bool | None = None
    """True: OCR every page; False: never; None (unset): pages without a usable text layer."""
    max_pages: int = MAX_OCR_PAGES
    timeout_s: float = OCR_TIMEOUT_S

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OcrOptions:
        use = config.get("use_ocr")
        return cls(
            use_ocr=None if use is None else bool(use),
            max_pages=_positive(config, "ocr_max_pages", MAX_OCR_PAGES),
            timeout_s=float(_positive(config, "ocr_timeout_s", OCR_TIMEOUT_S)),
        )


def _positive(config: dict[str, Any], key: str, default: float) -> Any:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ParseFailed(f"{key} must be a positive number, got {value!r}")
    return value


@dataclass
class OcrBudget:
    """Counts one file's OCR pages and time; `ParseFailed` naming the limit once past it.

    A file past a limit fails whole rather than keeping the pages read so far: a partial
    document would be searchable as if complete, and nothing would tell its owner."""

    filename: str
    options: OcrOptions
    pages: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def read(self, image: Image.Image) -> str:
        if self.pages >= self.options.max_pages:
            raise ParseFailed(
                f"'{self.filename}' needs OCR on more than {self.options.max_pages} pages "
                f"(ocr_max_pages); raise it in the parser's config or split the file"
            )
        if self.seconds >= self.options.timeout_s:
            raise ParseFailed(self._over_time())
        began = time.monotonic()
        text = ocr_image(image)
        self.seconds += time.monotonic() - began
        self.pages += 1
        if self.seconds > self.options.timeout_s:
            raise ParseFailed(self._over_time())
        return text

    def _over_time(self) -> str:
        return (
            f"'{self.filename}': OCR took longer than {self.options.timeout_s:g} s "
            f"(ocr_timeout_s) after {self.pages} pages; raise it in the parser's config "
            "or split the file"
        )


def engine() -> Any:
    """The process's one RapidOCR engine (~0.4 s and ~100 MB to load), made on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            # As llamafarm.onnx does: no telemetry files under ~/.cache from onnxruntime.
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
            from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

            threads = min(4, os.cpu_count() or 1)
            # "max" resizes only pages larger than the detector's side limit; the default
            # ("min", 736) upscaled a 900x200 photo of a line ~4x and took 5x as long.
            _engine = RapidOCR(
                det_limit_type="max",
                intra_op_num_threads=threads,
                inter_op_num_threads=1,
            )
        return _engine


def ocr_image(image: Image.Image) -> str:
    """The text of an image, line by line in reading order ("" when none is found)."""
    import numpy as np

    # A 3x3 median filter removes JPEG ringing around letters, which made the recogniser drop
    # spaces ("Invoice2041waspaid" from the scanned fixture at JPEG quality 75); it changed
    # nothing on the clean fixtures.
    smooth = image.convert("RGB").filter(ImageFilter.MedianFilter(3))
    rgb = np.asarray(smooth)[:, :, ::-1]  # RapidOCR takes OpenCV's BGR order
    with _run_lock:  # one image at a time: each run already uses the engine's threads
        result, _ = engine()(rgb, text_score=MIN_SCORE)
    if not result:
        return ""
    boxes = [(_box(points), str(text).strip()) for points, text, _score in result]
    return "\n".join(_lines([b for b in boxes if b[1]]))


def _box(points: Any) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _lines(boxes: list[tuple[tuple[float, float, float, float], str]]) -> list[str]:
    """Boxes on the same baseline joined left to right, lines top to bottom."""
    rows: list[list[tuple[tuple[float, float, float, float], str]]] = []
    for box, text in sorted(boxes, key=lambda b: (b[0][1], b[0][0])):
        middle = (box[1] + box[3]) / 2
        row = rows[-1] if rows else None
        if row and row[0][0][1] <= middle <= row[0][0][3]:
            row.append((box, text))
        else:
            rows.append([(box, text)])
    return [" ".join(text for _, text in sorted(row, key=lambda b: b[0][0])) for row in rows]


def text_quality(text: str) -> float:
    """Share of a text's characters in plausible words or numbers, 0 to 1.

    Language-neutral, by character classes rather than a dictionary: a token counts when, less
    edge punctuation, it is letters of one script family (no symbols, no mojibake pairs such
    as `Ã©`), or a number; Latin words longer than four letters need a vowel. Garbage layers
    (wrong font encodings, `(cid:N)` glyphs, mojibake) score near 0."""
    total = 0
    good = 0
    # CJK text has no spaces: its own punctuation separates the tokens.
    spaced = "".join(
        " " if ord(c) > 0x2000 and unicodedata.category(c)[0] == "P" else c for c in text
    )
    for token in spaced.split():
        total += len(token)
        if _MOJIBAKE.search(token):
            continue
        core = token.strip(_EDGE)
        if not core:
            good += len(token) if len(token) <= 2 else 0  # a lone dash or bullet is fine
            continue
        if _WORD.fullmatch(core) and _plausible(core):
            good += len(token)
    return good / total if total else 0.0


def _plausible(word: str) -> bool:
    if word[0].isdigit():
        return True
    latin = [c for c in word if c.isascii()]
    if len(latin) == len(word) and len(word) > 4 and not _LATIN_VOWELS & set(word):
        return False  # "xkcdq"-like runs from a wrong font encoding
    scripts = {_script(c) for c in word if c.isalpha()}
    return len(scripts) <= 1


def _script(char: str) -> str:
    name = unicodedata.name(char, "?").split(" ")[0]
    return "CJK" if name in _CJK else name
