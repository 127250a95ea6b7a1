"""Split parsed documents into chunks that never cross a section, so page and heading hold."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from llamafarm.documents import Chunk, MetadataValue, ParsedDocument
from llamafarm.errors import ConfigInvalid

STRATEGIES = ("characters", "sentences", "paragraphs", "sections")
LLAMAFARM_STRATEGIES = {
    "headings": "sections",
    "pages": "sections",
    "email_sections": "sections",
    "full": "sections",
    "rows": "paragraphs",
    "columns": "paragraphs",
    "semantic": "paragraphs",
    "code": "paragraphs",
    "tokens": "sentences",
}
"""LlamaFarm's other `chunk_strategy` names → the nearest of ours. A section is a heading's
text, a PDF page, an e-mail part or a sheet; rows and tabular text split by line blocks;
`semantic`, `code` and `tokens` have no model here and are warned about (`APPROXIMATE`)."""
APPROXIMATE = frozenset({"semantic", "code", "tokens", "columns"})
MIN_CHUNK_SIZE = 100
"""Below a sentence or two a chunk carries too little to retrieve by, and every chunk costs an
embedding and a stored row: `chunk_size: 1` made one chunk per character of an upload."""

Span = tuple[int, int]
"""Start and end offsets into a section's text: chunks are slices, so separators stay as written."""

_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_LINE = re.compile(r"\n\s*")
# After ., ! or ? (optionally closed by a quote or bracket); the lookbehinds keep those in the
# sentence and split only on the whitespace.
_SENTENCE = re.compile(r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+")
_WORD = re.compile(r"\s+")

# Per strategy: the separators that always split a section into units, then the finer ones used
# only on a unit still longer than chunk_size. Below the last one, text is cut every chunk_size.
_ALWAYS: dict[str, list[re.Pattern[str]]] = {
    "characters": [_WORD],
    "sentences": [_PARAGRAPH, _SENTENCE],
    "paragraphs": [_PARAGRAPH],
    "sections": [],
}
_OVERSIZE: dict[str, list[re.Pattern[str]]] = {
    "characters": [],
    "sentences": [_LINE, _WORD],
    "paragraphs": [_SENTENCE, _LINE, _WORD],
    "sections": [_PARAGRAPH, _SENTENCE, _LINE, _WORD],
}


def chunk_document(
    document: ParsedDocument,
    *,
    chunk_size: int = 1000,
    chunk_overlap: int = 100,
    chunk_strategy: str = "paragraphs",
) -> list[Chunk]:
    """Chunks of at most `chunk_size` characters, each section on its own.

    Units of the strategy (words, sentences, paragraphs or whole sections) are packed greedily;
    a unit that is too long is split by finer units. Each chunk after the first in a section
    starts with about `chunk_overlap` characters from the end of the one before, cut at a word
    boundary.
    """
    chunk_strategy = LLAMAFARM_STRATEGIES.get(chunk_strategy, chunk_strategy)
    _validate(chunk_size, chunk_overlap, chunk_strategy)
    chunks: list[Chunk] = []
    for section in document.sections:
        where: dict[str, MetadataValue] = dict(section.metadata)
        if section.page is not None:
            where["page"] = section.page
        if section.heading:
            where["heading"] = section.heading
        units = _units(section.text, chunk_strategy, chunk_size)
        for text in _pack(section.text, units, chunk_size, chunk_overlap):
            chunks.append(Chunk(text, {"chunk_index": len(chunks), **where}))
    return chunks


def check_options(options: Mapping[str, Any]) -> None:
    """ConfigInvalid when a parser's `chunk_size`, `chunk_overlap` or `chunk_strategy` (ours
    or LlamaFarm's name) cannot chunk; checked when a config is saved, not file by file."""
    strategy = options.get("chunk_strategy", "paragraphs")
    _validate(
        options.get("chunk_size", 1000),
        options.get("chunk_overlap", 100),
        LLAMAFARM_STRATEGIES.get(strategy, strategy) if isinstance(strategy, str) else strategy,
    )


def _validate(chunk_size: object, chunk_overlap: object, chunk_strategy: object) -> None:
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or chunk_size < MIN_CHUNK_SIZE
    ):
        raise ConfigInvalid(
            f"chunk_size must be a whole number of at least {MIN_CHUNK_SIZE}, got {chunk_size!r}"
        )
    # At most half: each chunk then brings at least as much new text as it repeats (an overlap
    # of chunk_size - 1 made one near-full chunk per word, the text stored ~chunk_size times).
    if (
        not isinstance(chunk_overlap, int)
        or isinstance(chunk_overlap, bool)
        or not 0 <= chunk_overlap <= chunk_size // 2
    ):
        raise ConfigInvalid(
            f"chunk_overlap must be a whole number from 0 to half of chunk_size "
            f"({chunk_size // 2}), got {chunk_overlap!r}"
        )
    if chunk_strategy not in STRATEGIES:
        raise ConfigInvalid(
            f"chunk_strategy {chunk_strategy!r} is unknown (known: {', '.join(STRATEGIES)})"
        )


def _units(text: str, strategy: str, size: int) -> list[tuple[Span, bool]]:
    """The spans to pack, each with whether it must open a new chunk.

    The pieces of a unit that had to be split are packed among themselves: a long paragraph
    starts a chunk of its own and the paragraph after it starts the next one.
    """
    spans = [span for span in [_trim(text, 0, len(text))] if span[1] > span[0]]
    for separator in _ALWAYS[strategy]:
        spans = [part for span in spans for part in _split(text, span, separator)]
    units: list[tuple[Span, bool]] = []
    after_split = False
    for span in spans:
        pieces = list(_fit(text, span, _OVERSIZE[strategy], size))
        split = len(pieces) > 1
        units.extend((piece, i == 0 and (split or after_split)) for i, piece in enumerate(pieces))
        after_split = split
    return units


def _fit(text: str, span: Span, separators: list[re.Pattern[str]], size: int) -> Iterator[Span]:
    """The span itself if it fits, else its parts by the next finer separator that helps."""
    start, end = span
    if end - start <= size:
        yield span
    elif not separators:
        for cut in range(start, end, size):
            yield _trim(text, cut, min(cut + size, end))
    else:
        for part in _split(text, span, separators[0]):
            yield from _fit(text, part, separators[1:], size)


def _split(text: str, span: Span, separator: re.Pattern[str]) -> list[Span]:
    start, end = span
    parts = []
    for match in separator.finditer(text, start, end):
        if match.start() > start:
            parts.append(_trim(text, start, match.start()))
        start = match.end()
    if end > start:
        parts.append(_trim(text, start, end))
    return [(s, e) for s, e in parts if e > s]


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(text: str, units: list[tuple[Span, bool]], size: int, overlap: int) -> Iterator[str]:
    """Greedily join consecutive units into slices of at most `size`, with overlap."""
    if not units:
        return
    (start, end), _ = units[0]
    for (unit_start, unit_end), fresh in units[1:]:
        if not fresh and unit_end - start <= size:
            end = unit_end
            continue
        yield text[start:end].strip()
        start = _overlap_start(text, (start, end), (unit_start, unit_end), size, overlap)
        end = unit_end
    yield text[start:end].strip()


def _overlap_start(text: str, previous: Span, unit: Span, size: int, overlap: int) -> int:
    """Where the next chunk starts: `overlap` back into the previous one, at a word start."""
    unit_start, unit_end = unit
    if overlap == 0:
        return unit_start
    # Never so far back that the chunk outgrows `size`; the unit itself always fits.
    start = max(previous[1] - overlap, unit_end - size, previous[0])
    if start > previous[0] and not text[start - 1].isspace():
        gap = _WORD.search(text, start, unit_start)
        start = gap.end() if gap else unit_start
    return start
