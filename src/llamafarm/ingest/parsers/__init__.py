"""Parsers, one module per format, chosen per file by a data processing strategy's config.

LlamaFarm's parser type names (`PDFParser_PyPDF2`, `TextParser_LlamaIndex`, `auto`, ...) are
registered beside ours and map to the parser of their format; any `<Format>Parser_<tool>` whose
`<Format>Parser` we have maps the same way (`parser_class`).
"""

from __future__ import annotations

import fnmatch
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Any

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.auto import AutoParser
from llamafarm.ingest.parsers.base import Parser
from llamafarm.ingest.parsers.csv import CSVParser
from llamafarm.ingest.parsers.docx import DocxParser
from llamafarm.ingest.parsers.eml import EmlParser
from llamafarm.ingest.parsers.epub import EPUBParser
from llamafarm.ingest.parsers.excel import ExcelParser
from llamafarm.ingest.parsers.html import HTMLParser
from llamafarm.ingest.parsers.image import ImageParser
from llamafarm.ingest.parsers.json import JSONParser
from llamafarm.ingest.parsers.markdown import MarkdownParser
from llamafarm.ingest.parsers.msg import MsgParser
from llamafarm.ingest.parsers.pdf import PDFParser
from llamafarm.ingest.parsers.pptx import PPTXParser
from llamafarm.ingest.parsers.text import TextParser
from llamafarm.registry import Registry

__all__ = [
    "CHUNK_KEYS",
    "FORMATS",
    "OPTIONS",
    "PARSERS",
    "Parser",
    "matches",
    "parse_file",
    "parse_with",
    "parser_class",
    "resolve",
    "select_parser",
]

PARSERS: Registry[type[Parser]] = Registry("parser")
"""Config `type` name → parser class."""
FORMATS: tuple[type[Parser], ...] = (
    TextParser,
    MarkdownParser,
    PDFParser,
    DocxParser,
    ExcelParser,
    CSVParser,
    HTMLParser,
    PPTXParser,
    JSONParser,
    EPUBParser,
    MsgParser,
    EmlParser,
    ImageParser,
)
for _parser in FORMATS:
    PARSERS.register(_parser.__name__, _parser)

LLAMAFARM_NAMES: dict[str, type[Parser]] = {
    "auto": AutoParser,
    "UniversalParser": AutoParser,
    "PDFParser_PyPDF2": PDFParser,
    "PDFParser_LlamaIndex": PDFParser,
    "TextParser_Python": TextParser,
    "TextParser_LlamaIndex": TextParser,
    "MarkdownParser_Python": MarkdownParser,
    "MarkdownParser_LlamaIndex": MarkdownParser,
    "CSVParser_Pandas": CSVParser,
    "CSVParser_Python": CSVParser,
    "CSVParser_LlamaIndex": CSVParser,
    "ExcelParser_OpenPyXL": ExcelParser,
    "ExcelParser_Pandas": ExcelParser,
    "ExcelParser_LlamaIndex": ExcelParser,
    "DocxParser_PythonDocx": DocxParser,
    "DocxParser_LlamaIndex": DocxParser,
    "MsgParser_ExtractMsg": MsgParser,
}
"""LlamaFarm 0.0.27's parser names → the parser of the same format here."""
for _name, _parser in LLAMAFARM_NAMES.items():
    PARSERS.register(_name, _parser)

AutoParser.formats = {ext: cls for cls in FORMATS for ext in cls.extensions}
AutoParser.extensions = tuple(AutoParser.formats)

OCR_OPTIONS = frozenset({"use_ocr", "ocr_max_pages", "ocr_timeout_s"})
"""The `config` keys of the parsers that read text by OCR (PDF, images)."""
CHUNK_KEYS = frozenset({"chunk_size", "chunk_overlap", "chunk_strategy"})
"""Keys of every parser's `config` that the pipeline's chunker honours."""
OPTIONS: dict[type[Parser], frozenset[str]] = {
    TextParser: frozenset({"encoding"}),
    MarkdownParser: frozenset({"encoding"}),
    PDFParser: frozenset({"password", *OCR_OPTIONS}),
    ImageParser: OCR_OPTIONS,
    CSVParser: frozenset({"delimiter", "has_header", "encoding"}),
    HTMLParser: frozenset({"encoding"}),
    JSONParser: frozenset({"encoding"}),
    MsgParser: frozenset(
        {"extract_headers", "extract_attachments", "include_attachment_content", "encoding"}
    ),
    EmlParser: frozenset({"extract_headers", "extract_attachments", "include_attachment_content"}),
    AutoParser: frozenset({"encoding", "password", "delimiter", "has_header", *OCR_OPTIONS}),
}
"""The `config` keys each parser reads, beyond `CHUNK_KEYS`; any other key is warned about."""


def parser_class(name: str) -> type[Parser] | None:
    """The class a `type` names: registered, or `<Format>Parser_<tool>` of a known format."""
    found = PARSERS.get(name)
    if found is None and "_" in name:
        found = PARSERS.get(name.split("_", 1)[0])
    return found


def matches(patterns: list[str], filename: str) -> bool:
    """Case-insensitive fnmatch against the whole name or its last path segment."""
    names = {filename.lower(), PurePosixPath(filename.replace("\\", "/")).name.lower()}
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns for name in names)


def handles(config: ParserConfig, filename: str) -> bool:
    """Whether a parser entry takes this file: its patterns, its extensions or its MIME types;
    an entry that gives none of the three takes its format's own extensions."""
    if config.file_include_patterns and matches(config.file_include_patterns, filename):
        return True
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if config.file_extensions and suffix in {e.lower() for e in config.file_extensions}:
        return True
    if config.mime_types:
        mime = mimetypes.guess_type(PurePosixPath(filename).name, strict=False)[0]
        if mime is not None and mime.lower() in {m.lower() for m in config.mime_types}:
            return True
    if config.file_include_patterns or config.file_extensions or config.mime_types:
        return False
    cls = parser_class(config.type)
    return cls is not None and suffix in cls.extensions


def select_parser(strategy: DataProcessingStrategy, filename: str) -> ParserConfig:
    """The strategy's parser for this file: the matching entry of lowest `priority`, then
    list order."""
    candidates = [
        (config.priority, order, config)
        for order, config in enumerate(strategy.parsers)
        if handles(config, filename)
    ]
    if not candidates:
        raise ParseFailed(
            f"No parser in strategy '{strategy.name}' handles '{filename}' "
            f"(patterns: {', '.join(_accepted(strategy)) or 'none'})"
        )
    chosen = min(candidates, key=lambda c: (c[0], c[1]))[2]
    if parser_class(chosen.type) is None:
        raise ParseFailed(
            f"No parser in strategy '{strategy.name}' handles '{filename}': "
            f"{PARSERS.unknown(chosen.type)}"
        )
    return chosen


def _accepted(strategy: DataProcessingStrategy) -> list[str]:
    found: set[str] = set()
    for config in strategy.parsers:
        cls = parser_class(config.type)
        explicit = [*config.file_include_patterns, *(config.file_extensions or [])]
        found.update(
            explicit or config.mime_types or ([f"*{e}" for e in cls.extensions] if cls else [])
        )
    return sorted(found)


def resolve(parser_cfg: ParserConfig) -> tuple[type[Parser], type[Parser] | None]:
    """The classes a parser entry names: its own and its `fallback_parser`'s (None if none)."""
    cls = parser_class(parser_cfg.type) or PARSERS.find(parser_cfg.type, error=ParseFailed)
    fallback = parser_cfg.fallback_parser
    if not fallback or fallback == parser_cfg.type:
        return cls, None
    return cls, parser_class(fallback) or PARSERS.find(fallback, error=ParseFailed)


def parse_file(parser_cfg: ParserConfig, path: Path, *, filename: str) -> ParsedDocument:
    """Parse one file with the configured parser, then its `fallback_parser` if that fails;
    `ParseFailed` if neither can."""
    cls, fallback = resolve(parser_cfg)
    return parse_with(cls, fallback, parser_cfg.config, path, filename=filename)


def parse_with(
    cls: type[Parser],
    fallback: type[Parser] | None,
    options: dict[str, Any],
    path: Path,
    *,
    filename: str,
) -> ParsedDocument:
    """`parse_file` with the classes resolved (as the parse sandbox's process gets them)."""
    try:
        return cls(options).parse(path, filename=filename)
    except ParseFailed as first:
        if fallback is None:
            raise
        try:
            return fallback(options).parse(path, filename=filename)
        except ParseFailed as second:
            raise ParseFailed(
                f"{first.detail}; fallback {fallback.__name__}: {second.detail}"
            ) from second
