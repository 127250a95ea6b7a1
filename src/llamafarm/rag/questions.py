"""A question set for `evaluate`: JSON lines, each a query and what should come back.

    {"query": "Why do glaciers retreat?", "relevant": ["glaciers.md"]}
    {"id": "q2", "query": "...", "relevant": {"a.md": 2, "3f2a...": 1}}
    {"query": "...", "expected": ["meltwater", "albedo"]}

`relevant` names documents (a file's name or its hash), each relevant with grade 1, or with the
grade its object gives (0 = judged not relevant); `expected` gives phrases, and a chunk that
holds one (case and spacing aside) is a relevant result for it. A question has one or the other.
Every mistake is a BadRequest that names its line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llamafarm.errors import BadRequest

MAX_QUESTIONS = 10_000
MAX_GRADE = 100
_KEYS = frozenset({"id", "query", "relevant", "expected"})


@dataclass(frozen=True)
class Question:
    id: str
    """The line's `id`, else `line N`."""
    query: str
    relevant: Mapping[str, int] = field(default_factory=dict)
    """Document name or hash -> grade."""
    expected: tuple[str, ...] = ()
    line: int = 0


def parse_questions(text: str) -> list[Question]:
    """The questions of a JSONL text, blank lines skipped."""
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        question = _question(number, line)
        if question.id in seen:
            raise BadRequest(
                f"line {number}: id {question.id!r} was already used on line {seen[question.id]}"
            )
        seen[question.id] = number
        questions.append(question)
        if len(questions) > MAX_QUESTIONS:
            raise BadRequest(f"line {number}: more than {MAX_QUESTIONS} questions")
    if not questions:
        raise BadRequest("The question set is empty: send one JSON object per line")
    return questions


def normalize(text: str) -> str:
    """How `expected` phrases and chunks are compared: lower case, runs of spaces as one."""
    return " ".join(text.lower().split())


def _question(number: int, line: str) -> Question:
    def bad(why: str) -> BadRequest:
        return BadRequest(f"line {number}: {why}")

    try:
        item = json.loads(line)
    except ValueError as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(item, dict):
        raise bad("expected a JSON object with `query` and `relevant` or `expected`")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    query = item.get("query")
    if not isinstance(query, str) or not query.strip():
        raise bad("`query` must be a non-empty string")
    qid = item.get("id", f"line {number}")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
        raise bad("`id` must be a non-empty string or a number")
    has_relevant, has_expected = "relevant" in item, "expected" in item
    if has_relevant == has_expected:
        raise bad("give either `relevant` (document names or hashes) or `expected` (phrases)")
    if has_relevant:
        relevant = _relevant(item["relevant"], bad)
        return Question(id=str(qid), query=query, relevant=relevant, line=number)
    return Question(
        id=str(qid), query=query, expected=_expected(item["expected"], bad), line=number
    )


def _relevant(value: Any, bad: Any) -> dict[str, int]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = dict.fromkeys(value, 1) if all(isinstance(v, str) for v in value) else None
    if not isinstance(value, dict) or not value:
        raise bad("`relevant` must be a non-empty list of document names or an object of grades")
    for name, grade in value.items():
        if not name.strip():
            raise bad("`relevant` has an empty document name")
        if not isinstance(grade, int) or isinstance(grade, bool) or not 0 <= grade <= MAX_GRADE:
            raise bad(f"the grade of {name!r} must be an integer from 0 to {MAX_GRADE}")
    if not any(value.values()):
        raise bad("`relevant` has no document with a grade above 0")
    return dict(value)


def _expected(value: Any, bad: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad("`expected` must be a non-empty list of phrases")
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise bad("each `expected` phrase must be a non-empty string")
    return tuple(dict.fromkeys(value))
