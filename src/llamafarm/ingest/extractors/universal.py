"""UniversalExtractor: LlamaFarm's all-in-one extractor, made of ours.

Each chunk gets its counts and position in the file (`character_count`, `word_count`,
`sentence_count`, `chunk_label` "2/5", `chunk_position` start/middle/end/only), `has_tables`,
`has_code`, YAKE `keywords`, entities found by pattern (`entities_email`, ...), a `summary` of
its first sentences and its `language` (py3langid, offline). The metadata names are
LlamaFarm's. Entities by a GLiNER model (`use_gliner`) are not run here; the check warns.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import py3langid

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.ingest.extractors.base import flag, integer, sentences, words
from llamafarm.ingest.extractors.keywords import KeywordExtractor
from llamafarm.ingest.extractors.patterns import PATTERN_ENTITIES, EntityExtractor
from llamafarm.ingest.extractors.tables import tables_in

_CODE = re.compile(
    r"```|^(?: {4}|\t)\S"  # a fence or an indented block
    r"|^\s*(?:def|class|function|import|from\s+\S+\s+import|#include)\b"
    r"|[{}]\s*$",
    re.MULTILINE,
)
_LANGUAGE_MIN_WORDS = 3
"""Below this many words a language guess is noise, so none is given."""


class UniversalExtractor:
    """Statistics, position, keywords, entities, summary and language of each chunk."""

    options: ClassVar[frozenset[str]] = frozenset(
        {
            "keyword_count",
            "use_gliner",
            "extract_entities",
            "generate_summary",
            "summary_sentences",
            "detect_language",
            "enabled",
        }
    )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.enabled = flag(config, "enabled", True)
        self.keywords = KeywordExtractor(
            {
                "algorithm": "yake",
                "max_keywords": integer(config, "keyword_count", 10),
                "deduplication_threshold": 0.7,  # LlamaFarm's YAKE setting here
            }
        )
        flag(config, "use_gliner", False)  # checked only: the check warns when true
        self.entities = (
            EntityExtractor({"entity_types": list(PATTERN_ENTITIES)})
            if flag(config, "extract_entities", True)
            else None
        )
        self.summary = flag(config, "generate_summary", True)
        self.summary_sentences = integer(config, "summary_sentences", 3)
        self.language = flag(config, "detect_language", True)
        self._total = 0

    def fit(self, chunks: list[Chunk]) -> None:
        """The file's chunk count, for each chunk's `chunk_label` and `chunk_position`."""
        self._total = len(chunks)

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]:
        if not self.enabled:
            return {}
        text = chunk.text
        said = sentences(text)
        found: dict[str, MetadataValue] = {
            "character_count": len(text),
            "word_count": len(text.split()),
            "sentence_count": len(said),
            **self._position(chunk),
            "has_tables": any(len(rows) >= 2 for rows in tables_in(text)),
            "has_code": _CODE.search(text) is not None,
        }
        found.update(self.keywords.extract(chunk))
        if self.entities is not None:
            found.update(self.entities.extract(chunk))
        if self.summary and said:
            found["summary"] = " ".join(said[: self.summary_sentences])
        if self.language and len(words(text)) >= _LANGUAGE_MIN_WORDS:
            found["language"] = str(py3langid.classify(text)[0])
        return found

    def _position(self, chunk: Chunk) -> dict[str, MetadataValue]:
        index = chunk.metadata.get("chunk_index")
        if not isinstance(index, int) or not 0 <= index < self._total:
            return {}
        last = self._total - 1
        where = (
            "only" if last == 0 else "start" if index == 0 else "end" if index == last else "middle"
        )
        return {"chunk_label": f"{index + 1}/{self._total}", "chunk_position": where}
