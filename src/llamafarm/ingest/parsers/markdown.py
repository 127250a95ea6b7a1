"""Markdown: one section per heading, with front matter's `title` (or the first H1) as the title."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import MetadataValue, ParsedDocument
from llamafarm.ingest.parsers.base import (
    SectionBuilder,
    clean_inline,
    decode_text_file,
    finish,
    read_bytes,
)

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+)$", re.MULTILINE)


class MarkdownParser:
    extensions: ClassVar[tuple[str, ...]] = (".md", ".markdown")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.encoding: str | None = (config or {}).get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        text = decode_text_file(read_bytes(path, filename), filename, encoding=self.encoding)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        metadata: dict[str, MetadataValue] = {"format": "markdown"}
        if front := _FRONT_MATTER.match(text):
            text = text[front.end() :]
            if title := _FRONT_TITLE.search(front.group(1)):
                metadata["title"] = clean_inline(title.group(1).strip("'\""))
        builder = SectionBuilder()
        for kind, value, level in _blocks(text.split("\n")):
            if kind == "heading":
                if level == 1 and "title" not in metadata:
                    metadata["title"] = clean_inline(value)
                builder.heading(value)
            else:
                builder.add(value)
        return finish(builder.build(), filename, metadata)


def _blocks(lines: list[str]) -> list[tuple[str, str, int]]:
    """Headings (ATX and setext, never inside fenced code) and the paragraphs between them."""
    blocks: list[tuple[str, str, int]] = []
    body: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if "".join(body).strip():
            blocks.append(("text", "\n".join(body), 0))
        body.clear()

    for line in lines:
        if fence is not None:
            body.append(line)
            if line.strip().startswith(fence):
                fence = None
        elif opener := _FENCE.match(line):
            fence = opener.group(1)
            body.append(line)
        elif atx := _ATX.match(line):
            flush()
            blocks.append(("heading", atx.group(2) or "", len(atx.group(1))))
        elif _SETEXT.match(line) and body and body[-1].strip():
            title = body.pop()
            flush()
            blocks.append(("heading", title, 1 if line.strip()[0] == "=" else 2))
        else:
            body.append(line)
    flush()
    return blocks
