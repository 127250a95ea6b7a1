"""Parsers, one module per format, chosen per file by a data processing strategy's config."""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import Parser
from llamafarm.ingest.parsers.csv import CSVParser
from llamafarm.ingest.parsers.docx import DocxParser
from llamafarm.ingest.parsers.epub import EPUBParser
from llamafarm.ingest.parsers.excel import ExcelParser
from llamafarm.ingest.parsers.html import HTMLParser
from llamafarm.ingest.parsers.json import JSONParser
from llamafarm.ingest.parsers.markdown import MarkdownParser
from llamafarm.ingest.parsers.pdf import PDFParser
from llamafarm.ingest.parsers.pptx import PPTXParser
from llamafarm.ingest.parsers.text import TextParser
from llamafarm.registry import Registry

__all__ = ["PARSERS", "Parser", "matches", "parse_file", "select_parser"]

PARSERS: Registry[type[Parser]] = Registry("parser")
"""Config `type` name → parser class."""
for _parser in (
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
):
    PARSERS.register(_parser.__name__, _parser)


def matches(patterns: list[str], filename: str) -> bool:
    """Case-insensitive fnmatch against the whole name or its last path segment."""
    names = {filename.lower(), PurePosixPath(filename.replace("\\", "/")).name.lower()}
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns for name in names)


def select_parser(strategy: DataProcessingStrategy, filename: str) -> ParserConfig:
    """The strategy's parser for this file: matching patterns, lowest `priority`, then list order.

    A parser without `file_include_patterns` handles its type's default extensions.
    """
    candidates = []
    for order, config in enumerate(strategy.parsers):
        if matches(_patterns(config), filename):
            candidates.append((config.priority, order, config))
    if not candidates:
        tried = sorted({p for c in strategy.parsers for p in _patterns(c)})
        raise ParseFailed(
            f"No parser in strategy '{strategy.name}' handles '{filename}' "
            f"(patterns: {', '.join(tried) or 'none'})"
        )
    chosen = min(candidates, key=lambda c: (c[0], c[1]))[2]
    if chosen.type not in PARSERS:
        raise ParseFailed(
            f"No parser in strategy '{strategy.name}' handles '{filename}': "
            f"{PARSERS.unknown(chosen.type)}"
        )
    return chosen


def _patterns(config: ParserConfig) -> list[str]:
    cls = PARSERS.get(config.type)
    return config.file_include_patterns or ([f"*{ext}" for ext in cls.extensions] if cls else [])


def parse_file(parser_cfg: ParserConfig, path: Path, *, filename: str) -> ParsedDocument:
    """Parse one file with the configured parser; `ParseFailed` if it cannot."""
    cls = PARSERS.find(parser_cfg.type, error=ParseFailed)
    return cls(parser_cfg.config).parse(path, filename=filename)
