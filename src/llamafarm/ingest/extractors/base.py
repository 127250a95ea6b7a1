"""The extractor protocol and the config and text helpers every extractor shares."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

from llamafarm.documents import Chunk, MetadataValue
from llamafarm.errors import ConfigInvalid

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

TOKEN = re.compile(r"[^\W\d_](?:[\w'\u2019-]*[^\W_])?")
SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


class Extractor(Protocol):
    options: ClassVar[frozenset[str]]
    """The `config` keys it honours; the others are accepted and warned about."""

    def __init__(self, config: dict[str, Any] | None = None) -> None: ...

    def extract(self, chunk: Chunk) -> dict[str, MetadataValue]: ...


def words(text: str) -> list[str]:
    """Lower-case words, possessive `'s` dropped (the duck's → duck)."""
    found = (w.replace("\u2019", "'") for w in TOKEN.findall(text.lower()))
    return [w[:-2] if w.endswith("'s") else w for w in found]


def sentences(text: str) -> list[str]:
    """Sentences split at `.`, `!` or `?` and at blank lines."""
    parts = (s.strip() for block in re.split(r"\n\s*\n", text) for s in SENTENCE.split(block))
    return [" ".join(p.split()) for p in parts if p]


def integer(config: dict[str, Any], key: str, default: int, *, low: int = 1) -> int:
    """A whole-number option of at least `low`; ConfigInvalid naming the key otherwise."""
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigInvalid(f"extractor config {key} must be an integer of at least {low}")
    return value


def flag(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigInvalid(f"extractor config {key} must be true or false, got {value!r}")
    return value


def joined(values: Iterable[str], limit: int = 50) -> str:
    """Distinct values in first-seen order as one string (stores keep scalars only)."""
    return ", ".join(list(dict.fromkeys(values))[:limit])
