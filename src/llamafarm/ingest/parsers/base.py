"""The parser protocol and the text, encoding and package helpers every format shares."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Protocol

import charset_normalizer

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed

MAX_FILE_BYTES = 200 * 1024 * 1024
"""Text-like files are read whole; anything bigger is refused rather than exhausting memory."""

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# C0/C1 controls other than tab/newline/CR (VT and FF become newlines first), plus invisible
# format characters that only break words apart for search.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")
_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\u2028\u2029\x85]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_GARBAGE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")


class Parser(Protocol):
    """Turns one file into sections of clean text; raises `ParseFailed` when it cannot."""

    extensions: ClassVar[tuple[str, ...]]
    """Lower-case suffixes handled when a config gives no `file_include_patterns`."""

    def __init__(self, config: dict[str, Any] | None = None) -> None: ...

    def parse(self, path: Path, *, filename: str) -> ParsedDocument: ...


def clean_text(text: str) -> str:
    """Drop control characters, unify line breaks, collapse spaces and runs of blank lines."""
    text = _CONTROL.sub("", _BREAKS.sub("\n", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def clean_inline(text: str) -> str:
    """`clean_text` on one line: every run of whitespace becomes one space."""
    return " ".join(_CONTROL.sub("", _BREAKS.sub(" ", text)).split())


def read_bytes(path: Path, filename: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ParseFailed(f"'{filename}' is too large to parse ({size // 2**20} MiB)")
        return path.read_bytes()
    except OSError as exc:
        raise ParseFailed(f"'{filename}' could not be read: {exc.strerror or exc}") from exc


def decode(data: bytes, *, declared: str | None = None) -> tuple[str, str] | None:
    """Decode bytes: BOM, then a declared charset, then UTF-8, then detection; None if unsure."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _try(data, codec)
    for candidate in (declared, "utf-8"):
        if candidate and (decoded := _try(data, candidate)):
            return decoded
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    # charset-normalizer cannot tell the Western code pages apart on short Latin-1 text and
    # may rank cp1250 first, which turns ñ into ń; at equal chaos prefer the common cp1252.
    tied = {m.encoding for m in matches if m.chaos <= best.chaos}
    return _try(data, "cp1252" if "cp1252" in tied else str(best.encoding))


def _try(data: bytes, codec: str) -> tuple[str, str] | None:
    try:
        return data.decode(codec), codec
    except (UnicodeDecodeError, LookupError):
        return None


def decode_text_file(
    data: bytes, filename: str, *, encoding: str | None = None, declared: str | None = None
) -> str:
    """Decode a text-like file, refusing binary content instead of returning garbage.

    `encoding` (from config) is used as-is; `declared` (from the file itself) is only a hint.
    """
    if encoding:
        try:
            text = data.decode(encoding)
        except LookupError as exc:
            raise ParseFailed(f"Unknown encoding {encoding!r} configured for '{filename}'") from exc
        except UnicodeDecodeError as exc:
            raise ParseFailed(f"'{filename}' is not valid {encoding} text: {exc.reason}") from exc
    else:
        # NUL never occurs in text except in UTF-16/32, which is recognised by its BOM.
        if b"\x00" in data and not data.startswith(tuple(bom for bom, _ in _BOMS[1:])):
            raise ParseFailed(f"'{filename}' looks like a binary file, not text")
        decoded = decode(data, declared=declared)
        if decoded is None:
            raise ParseFailed(f"'{filename}' looks like a binary file: no text encoding fits it")
        text = decoded[0]
    sample = text[: 1024 * 1024]
    if sample and len(_GARBAGE.findall(sample)) > 0.02 * len(sample):
        raise ParseFailed(f"'{filename}' looks like a binary file, not text")
    return text


def check_package(path: Path, filename: str, kind: str) -> None:
    """Refuse encrypted, legacy and corrupt packages before a library opens them (zip bombs are
    refused before the parser runs, by `ingest/sandbox/zips.py`)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_OLE_MAGIC))
            if head == _OLE_MAGIC:
                # Encrypted OOXML is wrapped in an OLE compound file with these stream names.
                rest = handle.read(MAX_FILE_BYTES)
                if "EncryptionInfo".encode("utf-16-le") in rest:
                    raise ParseFailed(
                        f"'{filename}' is encrypted/password-protected; "
                        "remove the password and upload it again"
                    )
                raise ParseFailed(
                    f"'{filename}' is a legacy binary Office file; only {kind} is supported"
                )
        with zipfile.ZipFile(path):
            pass
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ParseFailed(
            f"'{filename}' is not a valid {kind} file (corrupt or not a zip package)"
        ) from exc


class SectionBuilder:
    """Collects paragraphs under the nearest heading; each heading starts a new Section."""

    def __init__(self, *, page: int | None = None) -> None:
        self.page = page
        self.sections: list[Section] = []
        self._heading: str | None = None
        self._parts: list[str] = []
        self._has_body = False

    def heading(self, text: str) -> None:
        text = clean_inline(text)
        if not text:
            return
        # A heading with no body of its own (a chapter title above a subtitle) is kept as text
        # of the next section rather than becoming a section of one line.
        carried = self._parts if not self._has_body else []
        self.flush()
        self._heading = text
        self._parts = [*carried, text]

    def add(self, text: str) -> None:
        text = clean_text(text)
        if text:
            self._parts.append(text)
            self._has_body = True

    def flush(self) -> None:
        if self._has_body:
            self.sections.append(Section("\n\n".join(self._parts), self.page, self._heading))
        self._parts = []
        self._has_body = False

    def build(self) -> list[Section]:
        if self._parts and not self._has_body:
            self._has_body = True  # a trailing heading alone is still text of the document
        self.flush()
        return self.sections


def finish(
    sections: list[Section], filename: str, metadata: dict[str, MetadataValue]
) -> ParsedDocument:
    """The document, or `ParseFailed` when no section has text (never an empty document)."""
    kept = [s for s in sections if s.text.strip()]
    if not kept:
        raise ParseFailed(f"'{filename}' has no extractable text")
    return ParsedDocument(kept, {k: v for k, v in metadata.items() if v not in ("", None)})
