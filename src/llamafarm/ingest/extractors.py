"""Extractors add metadata to chunks: keywords by frequency, and the heading a chunk sits under."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Protocol

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.parsers import matches
from llamafarm.registry import Registry

_STOPWORDS = """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either else etc even ever every few for from further
    get gets got had hadn't has hasn't have haven't having he he'd he'll he's her here here's
    hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it
    it's its itself just least less let's like made make many may me might more most much must
    mustn't my myself neither no nor not now of off often on once one only or other others
    otherwise ought our ours ourselves out over own per rather same say says shall shan't she
    she'd she'll she's should shouldn't since so some such than that that's the their theirs
    them themselves then there there's therefore these they they'd they'll they're they've
    this those though through thus to too under until up upon us use used using very via was
    wasn't we we'd we'll we're we've well were weren't what what's when when's where where's
    whether which while who who's whom whose why why's will with within without won't would
    wouldn't yet you you'd you'll you're you've your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORDS.split())
"""Common English function words; they are frequent everywhere, so they say nothing."""

_TOKEN = re.compile(r"[^\W\d_](?:[\w'\u2019-]*[^\W_])?")
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


class Extractor(Protocol):
    def __init__(self, config: dict[str, Any] | None = None) -> None: ...

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]: ...


class KeywordExtractor:
    """The `max_keywords` most frequent words (3+ letters, not stopwords) as one string."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        limit = (config or {}).get("max_keywords", 5)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigInvalid(f"KeywordExtractor max_keywords must be at least 1, got {limit!r}")
        self.max_keywords = limit

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        words = (_base(w.replace("\u2019", "'")) for w in _TOKEN.findall(chunk.text.lower()))
        counts = Counter(w for w in words if len(w) >= 3 and w not in STOPWORDS)
        # most_common keeps first-seen order among equal counts, so results are stable.
        top = [word for word, _ in counts.most_common(self.max_keywords)]
        return {"keywords": ", ".join(top)} if top else {}


def _base(word: str) -> str:
    return word[:-2] if word.endswith("'s") else word  # the duck's → duck


class HeadingExtractor:
    """The section heading, else a Markdown heading or a short title-like first line."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        heading = chunk.metadata.get("heading")
        if isinstance(heading, str) and heading:
            return {"heading": heading}
        if found := _MARKDOWN_HEADING.search(chunk.text):
            return {"heading": found.group(1)}
        lines = chunk.text.strip().split("\n")
        if len(lines) > 1 and _looks_like_title(lines[0].strip()):
            return {"heading": lines[0].strip()}
        return {}


def _looks_like_title(line: str) -> bool:
    """Short, no closing punctuation, and in capitals or Title Case (not a wrapped sentence)."""
    words = line.split()
    if not words or len(line) > 80 or len(words) > 12 or line[-1] in ".,;:!?":
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    significant = [w for w in words if len(w) > 3 and w[0].isalpha()]
    return line.isupper() or all(w[0].isupper() for w in significant)


EXTRACTORS: Registry[type[Extractor]] = Registry("extractor")
"""Config `type` name → extractor class."""
EXTRACTORS.register("KeywordExtractor", KeywordExtractor)
EXTRACTORS.register("HeadingExtractor", HeadingExtractor)


def apply_extractors(strategy: DataProcessingStrategy, filename: str, chunks: list[Chunk]) -> None:
    """Run the strategy's extractors for this file, lowest `priority` first, into chunk metadata.

    An extractor with no `file_include_patterns` applies to every file.
    """
    unknown = sorted({e.type for e in strategy.extractors if e.type not in EXTRACTORS})
    if unknown:
        raise ConfigInvalid(f"Strategy '{strategy.name}': {EXTRACTORS.unknown(unknown[0])}")
    chosen = sorted(
        (
            (config.priority, order, config)
            for order, config in enumerate(strategy.extractors)
            if not config.file_include_patterns or matches(config.file_include_patterns, filename)
        ),
        key=lambda item: (item[0], item[1]),
    )
    for _, _, config in chosen:
        extractor = EXTRACTORS[config.type](config.config)
        for chunk in chunks:
            chunk.metadata.update(extractor.extract(chunk))
