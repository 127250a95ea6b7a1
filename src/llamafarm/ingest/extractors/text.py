"""Extractors that read a chunk's prose: its heading, its statistics and a short summary."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import STOPWORDS, flag, integer, sentences, words

_MARKDOWN_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_VOWELS = re.compile(r"[aeiouy]+")


class HeadingExtractor:
    """The section heading, else a Markdown heading or a short title-like first line."""

    options: ClassVar[frozenset[str]] = frozenset({"max_level", "min_heading_length", "enabled"})

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.max_level = integer(config, "max_level", 6)
        self.min_length = integer(config, "min_heading_length", 1)
        self.enabled = flag(config, "enabled", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        if not self.enabled:
            return {}
        heading = chunk.metadata.get("heading")
        if not (isinstance(heading, str) and heading):
            heading = self._from_text(chunk.text)
        return {"heading": heading} if heading and len(heading) >= self.min_length else {}

    def _from_text(self, text: str) -> str | None:
        for found in _MARKDOWN_HEADING.finditer(text):
            if len(found.group(1)) <= self.max_level:
                return found.group(2)
        lines = text.strip().split("\n")
        if len(lines) > 1 and _looks_like_title(lines[0].strip()):
            return lines[0].strip()
        return None


def _looks_like_title(line: str) -> bool:
    """Short, no closing punctuation, and in capitals or Title Case (not a wrapped sentence)."""
    parts = line.split()
    if not parts or len(line) > 80 or len(parts) > 12 or line[-1] in ".,;:!?":
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    significant = [w for w in parts if len(w) > 3 and w[0].isalpha()]
    return line.isupper() or all(w[0].isupper() for w in significant)


class ContentStatisticsExtractor:
    """Counts, vocabulary richness and Flesch reading ease (syllables guessed from vowels)."""

    options: ClassVar[frozenset[str]] = frozenset(
        {"include_readability", "include_vocabulary", "include_structure"}
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.readability = flag(config, "include_readability", True)
        self.vocabulary = flag(config, "include_vocabulary", True)
        self.structure = flag(config, "include_structure", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        tokens = words(chunk.text)
        said = sentences(chunk.text)
        found: dict[str, MetadataValue] = {
            "word_count": len(tokens),
            "char_count": len(chunk.text),
            "sentence_count": len(said),
        }
        if self.vocabulary and tokens:
            found["unique_words"] = len(set(tokens))
            found["lexical_diversity"] = round(len(set(tokens)) / len(tokens), 3)
            found["avg_word_length"] = round(sum(map(len, tokens)) / len(tokens), 2)
        if self.readability and tokens and said:
            syllables = sum(max(1, len(_VOWELS.findall(w))) for w in tokens)
            ease = 206.835 - 1.015 * len(tokens) / len(said) - 84.6 * syllables / len(tokens)
            found["flesch_reading_ease"] = round(ease, 1)
        if self.structure:
            found["paragraph_count"] = len(
                [p for p in re.split(r"\n\s*\n", chunk.text) if p.strip()]
            )
            found["line_count"] = len([line for line in chunk.text.split("\n") if line.strip()])
        return found


SUMMARY_ALGORITHMS = ("textrank", "luhn", "lsa", "lexrank")


class SummaryExtractor:
    """An extractive summary: the chunk's most central sentences, in their original order.

    `textrank` (and `lexrank`, the same graph) ranks sentences by PageRank over their word
    overlap; `luhn` by how many of the chunk's frequent words they hold. `lsa` runs textrank.
    """

    options: ClassVar[frozenset[str]] = frozenset(
        {
            "summary_sentences",
            "algorithm",
            "min_sentence_length",
            "max_sentence_length",
            "include_statistics",
        }
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.count = integer(config, "summary_sentences", 3)
        self.algorithm = str(config.get("algorithm", "textrank"))
        if self.algorithm not in SUMMARY_ALGORITHMS:
            known = ", ".join(SUMMARY_ALGORITHMS)
            raise ConfigInvalid(f"SummaryExtractor algorithm {self.algorithm!r} (known: {known})")
        self.min_length = integer(config, "min_sentence_length", 10, low=0)
        self.max_length = integer(config, "max_sentence_length", 500)
        self.statistics = flag(config, "include_statistics", True)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        said = [s for s in sentences(chunk.text) if self.min_length <= len(s) <= self.max_length]
        if not said:
            return {}
        scores = _luhn(said) if self.algorithm == "luhn" else _textrank(said)
        best = sorted(sorted(range(len(said)), key=lambda i: -scores[i])[: self.count])
        found: dict[str, MetadataValue] = {"summary": " ".join(said[i] for i in best)}
        if self.statistics:
            found["summary_sentence_count"] = len(best)
        return found


def _content(sentence: str) -> set[str]:
    return {w for w in words(sentence) if w not in STOPWORDS}


def _textrank(said: list[str]) -> list[float]:
    bags = [_content(s) for s in said]
    size = len(said)
    weights = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            if i != j and bags[i] and bags[j]:
                weights[i, j] = len(bags[i] & bags[j]) / (
                    np.log(len(bags[i]) + 1) + np.log(len(bags[j]) + 1)
                )
    totals = weights.sum(axis=1, keepdims=True)
    transition = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
    rank = np.full(size, 1.0 / size)
    for _ in range(50):
        rank = 0.15 / size + 0.85 * transition.T @ rank
    return [float(r) for r in rank]


def _luhn(said: list[str]) -> list[float]:
    counts = Counter(w for s in said for w in _content(s))
    common = {w for w, n in counts.most_common(max(1, len(counts) // 5)) if n > 1} or set(counts)
    return [len(_content(s) & common) / (len(s.split()) or 1) for s in said]
