"""Extractors add metadata to chunks: keywords, headings, statistics, summaries, links, paths,
dates, entities, named patterns and tables; UniversalExtractor several of them at once. The
type names are LlamaFarm's."""

from __future__ import annotations

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.documents import Chunk
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import STOPWORDS, Extractor
from llamafarm.ingest.extractors.keywords import KeywordExtractor
from llamafarm.ingest.extractors.patterns import (
    DateTimeExtractor,
    EntityExtractor,
    LinkExtractor,
    PathExtractor,
    PatternExtractor,
)
from llamafarm.ingest.extractors.tables import TableExtractor
from llamafarm.ingest.extractors.text import (
    ContentStatisticsExtractor,
    HeadingExtractor,
    SummaryExtractor,
)
from llamafarm.ingest.extractors.universal import UniversalExtractor
from llamafarm.ingest.parsers import matches
from llamafarm.registry import Registry

__all__ = ["EXTRACTORS", "STOPWORDS", "Extractor", "apply_extractors"]

EXTRACTORS: Registry[type[Extractor]] = Registry("extractor")
"""Config `type` name → extractor class."""
for _extractor in (
    KeywordExtractor,
    HeadingExtractor,
    ContentStatisticsExtractor,
    SummaryExtractor,
    DateTimeExtractor,
    EntityExtractor,
    LinkExtractor,
    PathExtractor,
    PatternExtractor,
    TableExtractor,
    UniversalExtractor,
):
    EXTRACTORS.register(_extractor.__name__, _extractor)
EXTRACTORS.register("StatisticsExtractor", ContentStatisticsExtractor)
EXTRACTORS.register("RAKEExtractor", KeywordExtractor)
EXTRACTORS.register("YAKEExtractor", KeywordExtractor)
EXTRACTORS.register("TFIDFExtractor", KeywordExtractor)

KEYWORD_VARIANTS = {"RAKEExtractor": "rake", "YAKEExtractor": "yake", "TFIDFExtractor": "tfidf"}
"""Keyword extractors named by their algorithm: KeywordExtractor with that `algorithm`."""


def build(kind: str, config: dict[str, object]) -> Extractor:
    """The extractor a `type` names with its `config`; ConfigInvalid for a bad one."""
    cls = EXTRACTORS.find(kind)
    if kind in KEYWORD_VARIANTS:
        config = {"algorithm": KEYWORD_VARIANTS[kind], **config}
    return cls(dict(config))


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
        extractor = build(config.type, config.config)
        fit = getattr(extractor, "fit", None)
        if fit is not None:
            fit(chunks)  # TF-IDF weighs words by the file's other chunks
        for chunk in chunks:
            chunk.metadata.update(extractor.extract(chunk))
