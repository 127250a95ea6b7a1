"""Keywords of a chunk: by frequency (ours), RAKE, YAKE (the `yake` package) or TF-IDF.

RAKE and frequency are written here (a few lines each); TF-IDF weighs a word by how few of the
file's chunks hold it, so the extractor is `fit` on the file's chunks first. LlamaFarm's
`textrank` has no implementation here and runs RAKE (the check warns about it).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, ClassVar

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.extractors.base import STOPWORDS, integer, words

ALGORITHMS = ("frequency", "rake", "yake", "tfidf", "textrank")
_PHRASE_BREAK = re.compile(r"[^\w\s'\u2019-]+|\n")


class KeywordExtractor:
    """The `max_keywords` best keywords of a chunk as one string, under `keywords`."""

    options: ClassVar[frozenset[str]] = frozenset(
        {
            "algorithm",
            "extractor_type",
            "max_keywords",
            "min_length",
            "max_length",
            "min_frequency",
            "stop_words",
            "language",
            "max_ngram_size",
            "deduplication_threshold",
        }
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        algorithm = str(config.get("algorithm") or config.get("extractor_type") or "frequency")
        if algorithm.lower() not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            raise ConfigInvalid(f"KeywordExtractor algorithm {algorithm!r} (known: {known})")
        self.algorithm = "rake" if algorithm.lower() == "textrank" else algorithm.lower()
        self.max_keywords = integer(config, "max_keywords", 5)
        self.min_length = integer(config, "min_length", 1)
        self.max_length = integer(config, "max_length", 4)
        self.min_frequency = integer(config, "min_frequency", 1)
        self.ngram = integer(config, "max_ngram_size", 3)
        self.language = str(config.get("language") or "en")
        dedup = config.get("deduplication_threshold", 0.9)
        if not isinstance(dedup, int | float) or isinstance(dedup, bool) or not 0 <= dedup <= 1:
            raise ConfigInvalid("KeywordExtractor deduplication_threshold must be in [0, 1]")
        self.dedup = float(dedup)
        extra = config.get("stop_words") or []
        if not isinstance(extra, list):
            raise ConfigInvalid("KeywordExtractor stop_words must be a list of words")
        self.stopwords = STOPWORDS | {str(w).lower() for w in extra}
        self._documents: Counter[str] = Counter()
        self._chunks = 0

    def fit(self, chunks: list[Chunk]) -> None:
        """TF-IDF's document frequencies over the file's chunks."""
        self._documents = Counter(w for c in chunks for w in set(self._words(c.text)))
        self._chunks = len(chunks)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        if self.algorithm == "yake":
            top = self._yake(chunk.text)
        elif self.algorithm == "rake":
            top = self._rake(chunk.text)
        else:
            top = self._weighted(chunk.text)
        return {"keywords": ", ".join(top)} if top else {}

    def _words(self, text: str) -> list[str]:
        return [w for w in words(text) if len(w) >= 3 and w not in self.stopwords]

    def _weighted(self, text: str) -> list[str]:
        counts = Counter(self._words(text))
        kept = {w: n for w, n in counts.items() if n >= self.min_frequency}
        if self.algorithm == "tfidf" and self._chunks:
            idf = {w: math.log((1 + self._chunks) / (1 + self._documents[w])) + 1 for w in kept}
            weights = {w: n * idf[w] for w, n in kept.items()}
        else:
            weights = {w: float(n) for w, n in kept.items()}
        # sorted is stable: among equal weights the first-seen word stays first.
        return sorted(weights, key=lambda w: -weights[w])[: self.max_keywords]

    def _rake(self, text: str) -> list[str]:
        """RAKE: phrases between stop words and punctuation, scored by word degree/frequency."""
        phrases: list[list[str]] = []
        for fragment in _PHRASE_BREAK.split(text.lower()):
            current: list[str] = []
            for word in [*words(fragment), ""]:
                if word and word not in self.stopwords and len(word) > 1:
                    current.append(word)
                    continue
                if self.min_length <= len(current) <= self.max_length:
                    phrases.append(current)
                current = []
        frequency: Counter[str] = Counter()
        degree: Counter[str] = Counter()
        for phrase in phrases:
            for word in phrase:
                frequency[word] += 1
                degree[word] += len(phrase)
        scores: dict[str, float] = {}
        counts = Counter(" ".join(p) for p in phrases)
        for phrase in phrases:
            key = " ".join(phrase)
            if counts[key] >= self.min_frequency:
                scores[key] = sum(degree[w] / frequency[w] for w in phrase)
        return sorted(scores, key=lambda k: -scores[k])[: self.max_keywords]

    def _yake(self, text: str) -> list[str]:
        # Imported here, not with the module (13 MiB with networkx): the worker imports the
        # extractors to check configs; its parse processes preload it (sandbox.child.PRELOAD).
        import yake

        extractor = yake.KeywordExtractor(
            lan=self.language, n=self.ngram, dedupLim=self.dedup, top=self.max_keywords
        )
        # YAKE's score: lower is better; it returns them best first.
        return [str(phrase) for phrase, _ in extractor.extract_keywords(text)]
