"""Keyword and heading extractors, and running a strategy's extractors over chunks."""

from __future__ import annotations

from typing import Any

import pytest

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.documents import Chunk, ParsedDocument, Section
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import (
    EXTRACTORS,
    HeadingExtractor,
    KeywordExtractor,
    apply_extractors,
)

TEXT = (
    "The duck swims. A duck dives, and the duck's feathers stay dry. Ducks and geese share "
    "ponds; geese honk at every duck. In 2019 there were 120 ducks and 45 geese on the pond "
    "by the pond."
)


def test_keywords_by_frequency_without_stopwords_numbers_or_short_words() -> None:
    found = KeywordExtractor({"max_keywords": 4}).extract(Chunk(TEXT))
    assert found == {"keywords": "duck, geese, ducks, pond"}


def test_keywords_default_to_five() -> None:
    found = KeywordExtractor().extract(Chunk(TEXT))
    assert len(str(found["keywords"]).split(", ")) == 5


def test_no_keywords_in_text_of_stopwords_and_numbers() -> None:
    assert KeywordExtractor().extract(Chunk("it is 42 and so on, at 7")) == {}


@pytest.mark.parametrize("value", [0, -3, "5", True])
def test_invalid_max_keywords(value: object) -> None:
    with pytest.raises(ConfigInvalid, match="max_keywords"):
        KeywordExtractor({"max_keywords": value})


@pytest.mark.parametrize(
    "chunk,heading",
    [
        (Chunk("Body text.", {"heading": "From the section"}), "From the section"),
        (Chunk("Some intro.\n\n## Install steps\n\nRun it."), "Install steps"),
        (Chunk("CHAPTER 1 INTRODUCTION\nThe trustee appoints."), "CHAPTER 1 INTRODUCTION"),
        (Chunk("Boots Self-Locking Nut\nThe Boots nut is one piece."), "Boots Self-Locking Nut"),
    ],
)
def test_heading_found(chunk: Chunk, heading: str) -> None:
    assert HeadingExtractor().extract(chunk) == {"heading": heading}


@pytest.mark.parametrize(
    "text",
    [
        "Plates must be attached to the structure\nin a positive manner.",  # a wrapped sentence
        "A short line.\nMore text.",
        "Only one line without a break",
    ],
)
def test_no_heading_when_nothing_looks_like_one(text: str) -> None:
    assert HeadingExtractor().extract(Chunk(text)) == {}


def strategy(*extractors: dict[str, Any]) -> DataProcessingStrategy:
    return DataProcessingStrategy.model_validate(
        {"name": "docs", "parsers": [{"type": "TextParser"}], "extractors": list(extractors)}
    )


def test_apply_extractors_merges_into_every_chunk() -> None:
    document = ParsedDocument([Section(TEXT, page=2, heading="Ponds")])
    chunks = chunk_document(document, chunk_size=100, chunk_overlap=0, chunk_strategy="sentences")
    apply_extractors(
        strategy(
            {"type": "KeywordExtractor", "config": {"max_keywords": 2}},
            {"type": "HeadingExtractor"},
        ),
        "ponds.txt",
        chunks,
    )
    assert len(chunks) > 1
    for chunk in chunks:
        assert set(chunk.metadata) == {"chunk_index", "page", "heading", "keywords"}
        assert chunk.metadata["heading"] == "Ponds"
        assert len(str(chunk.metadata["keywords"]).split(", ")) <= 2


def test_extractor_patterns_select_files() -> None:
    rules = strategy({"type": "KeywordExtractor", "file_include_patterns": ["*.md"]})
    markdown, text = [Chunk(TEXT)], [Chunk(TEXT)]
    apply_extractors(rules, "README.MD", markdown)
    apply_extractors(rules, "notes.txt", text)
    assert "keywords" in markdown[0].metadata
    assert text[0].metadata == {}


@pytest.mark.parametrize("first,second,expected", [(1, 2, 3), (2, 1, 1)])
def test_extractors_run_in_priority_order(first: int, second: int, expected: int) -> None:
    """The one that runs last wins a shared key."""
    rules = strategy(
        {"type": "KeywordExtractor", "config": {"max_keywords": 1}, "priority": first},
        {"type": "KeywordExtractor", "config": {"max_keywords": 3}, "priority": second},
    )
    chunks = [Chunk(TEXT)]
    apply_extractors(rules, "a.txt", chunks)
    assert len(str(chunks[0].metadata["keywords"]).split(", ")) == expected


def test_unknown_extractor_type_is_a_config_error_naming_it() -> None:
    rules = strategy({"type": "KeywordExtractor"}, {"type": "SentimentExtractor"})
    with pytest.raises(ConfigInvalid, match="Unknown extractor type 'SentimentExtractor'"):
        apply_extractors(rules, "a.txt", [Chunk(TEXT)])


def test_registry() -> None:
    assert EXTRACTORS["KeywordExtractor"] is KeywordExtractor
    assert EXTRACTORS["HeadingExtractor"] is HeadingExtractor
    assert EXTRACTORS["YAKEExtractor"] is KeywordExtractor
    assert "SentimentExtractor" not in EXTRACTORS
