"""JSON and JSON Lines: records become one section each, other values `path.to.key: value` lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, decode_text_file, finish, read_bytes


class JSONParser:
    extensions: ClassVar[tuple[str, ...]] = (".json", ".jsonl", ".ndjson")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.encoding: str | None = (config or {}).get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        text = decode_text_file(read_bytes(path, filename), filename, encoding=self.encoding)
        records, form = _load(text, filename)
        sections = [Section(flatten(record)) for record in records]
        return finish(sections, filename, {"format": form, "records": len(records)})


def _load(text: str, filename: str) -> tuple[list[Any], str]:
    """A top-level array is a list of records, so is JSON Lines; anything else is one record."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise ParseFailed(f"'{filename}' is not valid JSON: {exc}") from exc
        return _load_lines(text, filename), "jsonl"
    except RecursionError as exc:
        raise ParseFailed(f"'{filename}' is nested too deeply to parse") from exc
    return (value if isinstance(value, list) else [value]), "json"


def _load_lines(text: str, filename: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ParseFailed(f"'{filename}' line {number} is not valid JSON: {exc}") from exc
    return records


def flatten(value: Any) -> str:
    """`a.b.0: x` lines for every scalar; iterative so deep nesting cannot overflow the stack."""
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, dict):
            children = [(f"{key}.{k}" if key else str(k), v) for k, v in item.items()]
        elif isinstance(item, list):
            children = [(f"{key}.{i}" if key else str(i), v) for i, v in enumerate(item)]
        else:
            # JSON spells booleans in lower case; null carries nothing worth indexing.
            if item is None:
                continue
            text = json.dumps(item) if isinstance(item, bool) else clean_inline(str(item))
            if text:
                lines.append(f"{key}: {text}" if key else text)
            continue
        stack.extend(reversed(children))
    return "\n".join(lines)
