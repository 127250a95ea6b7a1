"""Extractors that find things by pattern: links, paths, dates, entities, named regexes.

No language model runs here: EntityExtractor finds the entity types a pattern can find
(EMAIL, URL, PHONE, MONEY, PERCENT, DATE, TIME) and leaves PERSON, ORG, GPE and the like,
which need a NER model, to a warning at validation.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from dateutil import parser as dateparser

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import flag, integer, joined

URL = r"\bhttps?://[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]"
EMAIL = r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
DATE = (
    rf"\b(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}/\d{{1,2}}/\d{{2,4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH}\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{4}})\b"
)
_MERIDIEM = r"\s?[AaPp](?:\.[Mm]\.|[Mm]\b)"
TIME = (
    rf"\b(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:{_MERIDIEM})?"
    rf"|\b(?:1[0-2]|0?[1-9]){_MERIDIEM}"
)
PATTERNS: dict[str, str] = {
    "email": EMAIL,
    "url": URL,
    "phone": r"(?<![\w+])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}\b",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "credit_card": r"\b(?:\d{4}[ -]?){3}\d{4}\b",
    "zip_code": r"\b\d{5}(?:-\d{4})?\b",
    "file_path": r"(?:[A-Za-z]:\\[^\s:*?\"<>|]+"
    r"|(?<![\w/:])(?:\.{1,2}/|~/|/)(?:[\w.-]+/)*[\w.-]+\.\w+)",
    # v1.2, or three parts (1.2.3): a bare 4.5 is a number, not a version.
    "version": r"\b(?:v\d+(?:\.\d+)+|\d+\.\d+\.\d+)(?:-[\w.]+)?\b",
    "date": DATE,
    "time": TIME,
    "money": r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|[MBK]))?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|dollars|euros))",
    "percent": r"\b\d+(?:\.\d+)?\s?(?:%|percent\b)",
}
PATTERNS["ip_address"] = PATTERNS["ip"]
"""Named regexes: PatternExtractor's predefined ones, and what the other extractors use."""


def _find(name: str, text: str) -> Iterator[str]:
    return (m.group(0) for m in re.finditer(PATTERNS[name], text))


class LinkExtractor:
    """URLs, e-mail addresses and the domains of both, under `links`, `emails`, `domains`."""

    options: ClassVar[frozenset[str]] = frozenset(
        {"extract_urls", "extract_emails", "extract_domains", "enabled"}
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.urls = flag(config, "extract_urls", True)
        self.emails = flag(config, "extract_emails", True)
        self.domains = flag(config, "extract_domains", True)
        self.enabled = flag(config, "enabled", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        if not self.enabled:
            return {}
        urls, emails = list(_find("url", chunk.text)), list(_find("email", chunk.text))
        found: dict[str, MetadataValue] = {}
        if self.urls and urls:
            found["links"] = joined(urls)
        if self.emails and emails:
            found["emails"] = joined(emails)
        hosts = [urlsplit(u).hostname or "" for u in urls] + [e.split("@")[1] for e in emails]
        if self.domains and any(hosts):
            found["domains"] = joined(h.lower() for h in hosts if h)
        return found


class PathExtractor:
    """File paths (POSIX, Windows, relative), S3 paths and URLs named in the text."""

    options: ClassVar[frozenset[str]] = frozenset(
        {"extract_file_paths", "extract_urls", "extract_s3_paths", "normalize_paths", "enabled"}
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.files = flag(config, "extract_file_paths", True)
        self.urls = flag(config, "extract_urls", True)
        self.s3 = flag(config, "extract_s3_paths", True)
        self.normalize = flag(config, "normalize_paths", True)
        self.enabled = flag(config, "enabled", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        if not self.enabled:
            return {}
        found: dict[str, MetadataValue] = {}
        if self.files and (paths := list(_find("file_path", chunk.text))):
            found["file_paths"] = joined(self._normal(p) for p in paths)
        if self.urls and (urls := list(_find("url", chunk.text))):
            found["urls"] = joined(urls)
        if self.s3 and (buckets := re.findall(r"\bs3://[\w.-]+(?:/[^\s,;\"'<>]*)?", chunk.text)):
            found["s3_paths"] = joined(buckets)
        return found

    def _normal(self, path: str) -> str:
        if not self.normalize or "\\" in path:
            return path
        kept = posixpath.normpath(path)
        return f"./{kept}" if path.startswith("./") and not kept.startswith(".") else kept


class DateTimeExtractor:
    """Dates as ISO `YYYY-MM-DD` (`dates`), clock times (`times`), and relative phrases and
    durations as written (`relative_dates`, `durations`)."""

    options: ClassVar[frozenset[str]] = frozenset(
        {"extract_times", "extract_relative", "extract_durations", "date_format", "fuzzy_parsing"}
    )
    _RELATIVE = re.compile(
        r"\b(?:today|tomorrow|yesterday|tonight|(?:next|last|this)\s+"
        r"(?:week|month|year|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
        r"|\d+\s+(?:days?|weeks?|months?|years?)\s+(?:ago|from now))\b",
        re.IGNORECASE,
    )
    _DURATION = re.compile(
        r"\b\d+(?:\.\d+)?\s+(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b(?!\s+(?:ago|from))",
        re.IGNORECASE,
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.times = flag(config, "extract_times", True)
        self.relative = flag(config, "extract_relative", True)
        self.durations = flag(config, "extract_durations", True)
        self.fuzzy = flag(config, "fuzzy_parsing", True)
        self.iso = str(config.get("date_format", "ISO")).upper() == "ISO"

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        found: dict[str, MetadataValue] = {}
        dates = [d for d in (self._date(m) for m in _find("date", chunk.text)) if d]
        if dates:
            found["dates"] = joined(dates)
        if self.times and (times := list(_find("time", chunk.text))):
            found["times"] = joined(t.strip() for t in times)
        if self.relative and (relative := self._RELATIVE.findall(chunk.text)):
            found["relative_dates"] = joined(r.lower() for r in relative)
        if self.durations and (spans := self._DURATION.findall(chunk.text)):
            found["durations"] = joined(spans)
        return found

    def _date(self, text: str) -> str | None:
        """The date in ISO form (or as written when `date_format` is not ISO); None if bad."""
        if not self.iso:
            return text
        try:
            default = datetime(2000, 1, 1)
            parsed = dateparser.parse(text, default=default, fuzzy=self.fuzzy)
        except (ValueError, OverflowError):
            return None
        return parsed.date().isoformat()


PATTERN_ENTITIES = {
    "EMAIL": "email",
    "URL": "url",
    "PHONE": "phone",
    "MONEY": "money",
    "PERCENT": "percent",
    "DATE": "date",
    "TIME": "time",
}
"""Entity types a pattern finds; the others of LlamaFarm's list need a NER model."""
DEFAULT_ENTITY_TYPES = ["PERSON", "ORG", "GPE", "DATE", "TIME", "MONEY", "EMAIL", "PHONE"]
DEFAULT_ENTITY_TYPES += ["URL", "PERCENT", "PRODUCT", "EVENT"]


class EntityExtractor:
    """Entities by pattern, one key each: `entities_email`, `entities_money`, ..."""

    options: ClassVar[frozenset[str]] = frozenset({"entity_types", "min_entity_length"})

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        types = config.get("entity_types", DEFAULT_ENTITY_TYPES)
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ConfigInvalid("EntityExtractor entity_types must be a list of names")
        self.types = [t.upper() for t in types if t.upper() in PATTERN_ENTITIES]
        self.min_length = integer(config, "min_entity_length", 2)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        found: dict[str, MetadataValue] = {}
        for kind in self.types:
            hits = [h.strip() for h in _find(PATTERN_ENTITIES[kind], chunk.text)]
            kept = [h for h in hits if len(h) >= self.min_length]
            if kept:
                found[f"entities_{kind.lower()}"] = joined(kept)
        return found


class PatternExtractor:
    """Matches of predefined and custom regexes, one key each: `pattern_<name>`."""

    options: ClassVar[frozenset[str]] = frozenset(
        {
            "predefined_patterns",
            "custom_patterns",
            "case_sensitive",
            "max_matches_per_pattern",
            "deduplicate_matches",
        }
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        flags = 0 if flag(config, "case_sensitive", False) else re.IGNORECASE
        self.limit = integer(config, "max_matches_per_pattern", 100)
        self.dedupe = flag(config, "deduplicate_matches", True)
        self.patterns: dict[str, re.Pattern[str]] = {}
        for name in config.get("predefined_patterns") or []:
            if name not in PATTERNS:
                known = ", ".join(sorted(PATTERNS))
                raise ConfigInvalid(
                    f"PatternExtractor: unknown predefined pattern {name!r} (known: {known})"
                )
            self.patterns[name] = re.compile(PATTERNS[name], flags)
        for entry in config.get("custom_patterns") or []:
            if not isinstance(entry, dict) or not {"name", "pattern"} <= set(entry):
                raise ConfigInvalid(
                    "PatternExtractor custom_patterns need a name and a pattern each"
                )
            try:
                self.patterns[str(entry["name"])] = re.compile(str(entry["pattern"]), flags)
            except re.error as exc:
                raise ConfigInvalid(f"PatternExtractor pattern {entry['name']!r}: {exc}") from exc

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        found: dict[str, MetadataValue] = {}
        for name, pattern in self.patterns.items():
            hits = [m.group(0) for m in pattern.finditer(chunk.text)]
            if self.dedupe:
                hits = list(dict.fromkeys(hits))
            if hits:
                found[f"pattern_{name}"] = ", ".join(hits[: self.limit])
        return found
