"""Large text, CSV and JSON Lines files read block by block, so a parse holds one block at a time.

Below `STREAM_BYTES` a file goes to its parser whole (the one way every format is read); above
it these three formats, whose text is a sequence of independent lines, come as a stream of
`Section`s of about `BLOCK_CHARS` each. A chunk never crosses a section, so a block ends at a
blank line where the text has one, else at a line end. The encoding is chosen once for the
whole file: the configured one, a BOM, UTF-8 when every byte of the file decodes as UTF-8
(checked in one pass that keeps nothing), else the detection of `decode` on its first MiB.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from llamafarm.documents import Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import (
    Parser,
    clean_inline,
    clean_text,
    decode,
    decode_text_file,
)
from llamafarm.ingest.parsers.csv import CSVParser
from llamafarm.ingest.parsers.json import JSONParser, flatten
from llamafarm.ingest.parsers.text import TextParser

STREAM_BYTES = 8 << 20
"""Files of these formats larger than this are streamed."""
BLOCK_CHARS = 1 << 20
"""About how much text one streamed section holds."""
_SAMPLE = 1 << 20
_READ = 1 << 20
_JSON_LINES = (".jsonl", ".ndjson")


def stream_sections(parser: Parser, path: Path, filename: str) -> Iterator[Section] | None:
    """The file's sections as a stream, or None when this parser reads the file whole."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ParseFailed(f"'{filename}' could not be read: {exc.strerror or exc}") from exc
    if size <= STREAM_BYTES:
        return None
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if type(parser) is TextParser:
        return _text(path, filename, parser.encoding)
    if type(parser) is CSVParser:
        return _csv(parser, path, filename)
    if type(parser) is JSONParser and suffix in _JSON_LINES:
        return _json_lines(path, filename, parser.encoding)
    return None


def _text(path: Path, filename: str, encoding: str | None) -> Iterator[Section]:
    with _open(path, filename, encoding) as (handle, codec), _decoding(filename, codec):
        for block in _blocks(handle, filename):
            text = clean_text(block)
            if text:
                yield Section(text)


def _csv(parser: CSVParser, path: Path, filename: str) -> Iterator[Section]:
    with _open(path, filename, parser.encoding) as (handle, codec), _decoding(filename, codec):
        sample = handle.read(64 * 1024)
        handle.seek(0)
        dialect = parser._dialect(sample, filename)
        header: list[str] = []
        lines: list[str] = []
        size = 0
        try:
            for raw in csv.reader(handle, dialect):
                row = [clean_inline(cell) for cell in raw]
                if not any(row):
                    continue
                if parser.has_header and not header:
                    header = row
                    continue
                line = _row(row, header)
                lines.append(line)
                size += len(line) + 1
                if size >= BLOCK_CHARS:
                    yield Section("\n".join(lines))
                    lines, size = [], 0
        except csv.Error as exc:
            raise ParseFailed(f"'{filename}' is not valid CSV: {exc}") from exc
        if any(lines):
            yield Section("\n".join(line for line in lines if line))


def _row(row: list[str], header: list[str]) -> str:
    """A row as `Name: value; Name: value`, as `tables` writes a table's rows (a streamed file is
    one table under its first row: blocks and titles are told apart only in files read whole)."""
    if not header:
        return "; ".join(cell for cell in row if cell)
    return "; ".join(
        f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {cell}"
        for i, cell in enumerate(row)
        if cell
    )


def _json_lines(path: Path, filename: str, encoding: str | None) -> Iterator[Section]:
    with _open(path, filename, encoding) as (handle, codec), _decoding(filename, codec):
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ParseFailed(f"'{filename}' line {number} is not valid JSON: {exc}") from exc
            text = flatten(record)
            if text:
                yield Section(text)


def _blocks(handle: IO[str], filename: str) -> Iterator[str]:
    """Text in blocks of about BLOCK_CHARS, each cut after a blank line, else a line end."""
    carried = ""
    while chunk := handle.read(BLOCK_CHARS):
        if "\x00" in chunk:
            raise ParseFailed(f"'{filename}' looks like a binary file, not text")
        text = carried + chunk
        cut = text.rfind("\n\n")
        if cut < len(text) // 2:
            cut = text.rfind("\n")
        if cut <= 0:
            carried = text  # one very long line: it goes on into the next read
            if len(carried) < 4 * BLOCK_CHARS:
                continue
            cut = len(carried)
        yield text[:cut]
        carried = text[cut:]
    if carried.strip():
        yield carried


@contextlib.contextmanager
def _open(path: Path, filename: str, encoding: str | None) -> Iterator[tuple[IO[str], str]]:
    """The file as text in its one encoding, and that encoding."""
    codec = encoding or _encoding(path, filename)
    try:
        codecs.lookup(codec)
    except LookupError as exc:
        raise ParseFailed(f"Unknown encoding {codec!r} configured for '{filename}'") from exc
    with path.open(encoding=codec, errors="strict", newline="") as handle:
        yield handle, codec


@contextlib.contextmanager
def _decoding(filename: str, codec: str) -> Iterator[None]:
    """A decoding error half-way through is the file's ParseFailed, as in a whole parse."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise ParseFailed(f"'{filename}' is not valid {codec} text: {exc.reason}") from exc


def _encoding(path: Path, filename: str) -> str:
    with path.open("rb") as handle:
        sample = handle.read(_SAMPLE)
    # Whole lines only: a sample cut inside a character would not decode as what it is.
    sample = sample[: sample.rfind(b"\n") + 1] or sample
    # Refuses binary content on the first MiB as a whole parse would.
    decode_text_file(sample, filename)
    found = decode(sample)
    codec = found[1] if found else "utf-8"
    if codec not in ("utf-8", "utf-8-sig") or _all_utf8(path):
        return codec
    # The first MiB is UTF-8 but not the rest: detection, with UTF-8 ruled out.
    found = decode(sample, declared="cp1252")
    if found is None:
        raise ParseFailed(f"'{filename}' looks like a binary file: no text encoding fits it")
    return found[1]


def _all_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            while block := handle.read(_READ):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True
