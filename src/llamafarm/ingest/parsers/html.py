"""HTML with BeautifulSoup: the main content only, headings start sections, tables as rows."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector
from bs4.element import NavigableString, Tag

from llamafarm.documents import MetadataValue, ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import (
    SectionBuilder,
    clean_inline,
    decode_text_file,
    finish,
    read_bytes,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = _words(
    "address article blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure hr html legend li main ol p pre section summary tbody td tfoot th thead "
    "tr ul"
)
_DROP_TAGS = sorted(
    _words(
        "script style noscript template nav footer aside form button svg iframe select input "
        "textarea object embed canvas menu"
    )
)
_DROP_ROLES = _words("navigation banner contentinfo search complementary menu menubar")
# Class/id words that mark navigation chrome on common sites (MediaWiki, CMS themes).
_DROP_WORDS = _words(
    "navbox navbar navigation nav menu breadcrumb breadcrumbs sidebar toc skip-link skiplink "
    "mw-editsection mw-jump-link catlinks printfooter noprint mw-navigation vector-toc "
    "cookie-banner"
)
# WHATWG: pages labelled Latin-1 or ASCII are decoded as windows-1252 by every browser.
_WHATWG_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
}
_SPACE = re.compile(r"\s+")


class HTMLParser:
    extensions: ClassVar[tuple[str, ...]] = (".html", ".htm", ".xhtml")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.encoding: str | None = (config or {}).get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        soup = make_soup(read_bytes(path, filename), filename, encoding=self.encoding)
        metadata: dict[str, MetadataValue] = {"format": "html"}
        if soup.title is not None:
            metadata["title"] = clean_inline(soup.title.get_text())
        builder = SectionBuilder()
        add_html(content_root(soup), builder, filename)
        return finish(builder.build(), filename, metadata)


def make_soup(data: bytes, filename: str, *, encoding: str | None = None) -> BeautifulSoup:
    """Decode (BOM, meta charset, UTF-8, detection) and parse with the stdlib-backed parser."""
    declared = EncodingDetector.find_declared_encoding(data[:4096], is_html=True)
    if declared:
        declared = _WHATWG_ALIASES.get(declared.lower(), declared)
    text = decode_text_file(data, filename, encoding=encoding, declared=declared)
    with warnings.catch_warnings():
        # XHTML (EPUB chapters) is parsed as HTML on purpose, and a tiny page can look like a URL.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(text, "html.parser")
    strip_boilerplate(soup)
    return soup


def strip_boilerplate(soup: BeautifulSoup) -> None:
    """Remove scripts, navigation, page chrome and hidden elements; keep headings of <header>."""
    for header in soup.find_all("header"):
        for heading in header.find_all(["h1", "h2"]):
            header.insert_before(heading.extract())
    doomed = [tag for tag in soup.find_all(True) if tag.name == "header" or _is_chrome(tag)]
    doomed += soup.find_all(_DROP_TAGS)
    for tag in doomed:
        tag.decompose()


def _is_chrome(tag: Tag) -> bool:
    if tag.name in ("html", "body", "main"):
        return False
    words = {*tag.get_attribute_list("class"), tag.get("id") or ""}
    return (
        not words.isdisjoint(_DROP_WORDS)
        or tag.get("role") in _DROP_ROLES
        or tag.get("aria-hidden") == "true"
        or tag.has_attr("hidden")
        or "display:none" in str(tag.get("style") or "").replace(" ", "")
    )


def content_root(soup: BeautifulSoup) -> Tag:
    """The page's main content when it marks one, else the body."""
    for found in (
        soup.find("main"),
        soup.find(role="main"),
        soup.find("article") if len(soup.find_all("article")) == 1 else None,
        soup.find(id="content"),
        soup.find(id="main-content"),
    ):
        if isinstance(found, Tag) and found.get_text(strip=True):
            return found
    return soup.body or soup


def add_html(root: Tag, builder: SectionBuilder, filename: str, *, depth: int = 6) -> None:
    """Walk the tree: block elements become paragraphs, headings down to h`depth` start sections."""
    try:
        _Walker(builder, depth).walk(root)
    except RecursionError as exc:
        raise ParseFailed(f"'{filename}' is nested too deeply to parse") from exc


class _Walker:
    def __init__(self, builder: SectionBuilder, depth: int) -> None:
        self.builder = builder
        self.depth = depth
        self.buffer: list[str] = []

    def flush(self) -> None:
        self.builder.add("".join(self.buffer))
        self.buffer.clear()

    def walk(self, node: Tag, pre: bool = False) -> None:
        for child in node.children:
            if isinstance(child, Tag):
                self._element(child, pre)
            elif type(child) is NavigableString:  # not comments, doctypes or CDATA
                self.buffer.append(str(child) if pre else _SPACE.sub(" ", child))

    def _element(self, tag: Tag, pre: bool) -> None:
        if tag.name in HEADINGS:
            self.flush()
            if int(tag.name[1]) <= self.depth:
                self.builder.heading(inline_text(tag))
            else:
                self.builder.add(inline_text(tag))
        elif tag.name == "br":
            self.buffer.append("\n")
        elif tag.name == "table":
            self.flush()
            self.builder.add(table_text(tag))
        elif tag.name in _BLOCKS:
            self.flush()
            self.walk(tag, pre or tag.name == "pre")
            self.flush()
        else:
            self.walk(tag, pre)


def inline_text(tag: Tag) -> str:
    """Text on one line, with a space where a <br> or a block boundary falls."""
    parts = []
    for node in tag.descendants:
        if isinstance(node, Tag):
            if node.name == "br" or node.name in _BLOCKS:
                parts.append(" ")
        elif type(node) is NavigableString:
            parts.append(str(node))
    return clean_inline("".join(parts))


def table_text(table: Tag) -> str:
    """One line per row, cells joined by ` | `; nested tables fold into their cell."""
    lines = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = [inline_text(cell) for cell in row.find_all(["td", "th"], recursive=False)]
        if any(cells):
            lines.append(" | ".join(cell for cell in cells if cell))
    return "\n".join(lines)
