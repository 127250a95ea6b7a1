"""HTML with BeautifulSoup and lxml: the main content only, headings start sections, tables as
rows that name their columns.

lxml repairs markup as browsers do: a table opened inside `<center>` that closes first keeps its
rows (Python's `html.parser` ends the table there and leaves the rest as loose cells). The page's
`<title>` is the document's title, and its heading where the page has no `<h1>`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
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
from llamafarm.ingest.parsers.tables import render_table


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
    "footer site-footer page-footer mw-footer"
)
# Class/id words of cookie and consent banners: `cookie-banner`, `gdpr-notice`, `consent-modal`,
# the common consent tools; not any word with "cookie" in it (a recipe's `cookie-card` stays).
_CONSENT = re.compile(
    r"(cookie|consent|gdpr).*(banner|bar|notice|popup|modal|dialog|wall|overlay|consent|prompt)"
    r"|(banner|notice|popup|modal|dialog).*(cookie|consent|gdpr)"
    r"|cookiebot|onetrust|cookieconsent|usercentrics|didomi|qc-cmp",
    re.IGNORECASE,
)
_MAX_SPAN = 1000
"""The most columns or rows one cell may span (browsers cap `colspan` at 1000 too)."""
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
        root = content_root(soup)
        title = clean_inline(soup.title.get_text()) if soup.title is not None else ""
        h1 = root.find("h1")
        metadata: dict[str, MetadataValue] = {
            "format": "html",
            "title": title or (inline_text(h1) if isinstance(h1, Tag) else ""),
        }
        builder = SectionBuilder()
        if title and h1 is None:
            builder.heading(title)  # the heading of the text above the page's first heading
        add_html(root, builder, filename)
        sections = builder.build()
        if metadata["title"]:  # every chunk says which page it is from
            where: dict[str, MetadataValue] = {"title": metadata["title"]}
            sections = [replace(section, metadata=where) for section in sections]
        return finish(sections, filename, metadata)


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
        soup = BeautifulSoup(text, "lxml")
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
        or any(_CONSENT.search(str(word)) for word in words)
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
    """One line per data row naming its columns (see `tables`); nested tables fold into their
    cell; `<caption>` is the title, `<thead>` or leading rows of `<th>` the header."""
    grid: list[list[str]] = []
    joined: set[tuple[int, int]] = set()
    below: dict[int, tuple[int, str]] = {}  # column → (rows still covered, text) of rowspans
    header_rows = 0
    in_header = True
    marked = False  # whether the table marks any cell as a header cell
    labels = []  # per body row: whether its first cell is a <th> labelling the rest
    for row in _own_rows(table):
        cells = row.find_all(["td", "th"], recursive=False)
        if not cells:
            continue
        line: list[str] = []
        r = len(grid)
        for cell in cells:
            while len(line) in below:
                _take_rowspan(line, below)
            text = inline_text(cell)
            for span in range(_span(cell, "colspan")):
                if span:
                    joined.add((r, len(line)))
                rows_down = min(_span(cell, "rowspan"), _MAX_SPAN) - 1
                if rows_down > 0:
                    below[len(line)] = (rows_down, text)
                line.append(text)
        while len(line) in below:
            _take_rowspan(line, below)
        header = row.find_parent("thead") is not None or all(c.name == "th" for c in cells)
        marked = marked or any(c.name == "th" for c in cells)
        if in_header and header and any(line):
            header_rows += 1
        else:
            in_header = False
            labels.append(cells[0].name == "th" and len(cells) > 1)
        grid.append(line)
    if not header_rows and labels and all(labels):
        # `<th>Population</th><td>1,200</td>`: each row's label names the value beside it.
        for line in grid:
            line[0] = line[0] if not line[0] or line[0].endswith(":") else f"{line[0]}:"
    caption = table.find("caption")
    rendered = render_table(
        grid,
        title=inline_text(caption) if isinstance(caption, Tag) and _owns(table, caption) else "",
        # Markup that marks header cells is trusted: `<th>` only down the first column means
        # row labels and no header row.
        header_rows=header_rows if header_rows or marked else None,
        joined=frozenset(joined),
    )
    return "\n".join(rendered.lines)


def _owns(table: Tag, tag: Tag) -> bool:
    return tag.find_parent("table") is table


def _own_rows(table: Tag) -> list[Tag]:
    """The table's rows, not those of tables nested in its cells."""
    return [row for row in table.find_all("tr") if row.find_parent("table") is table]


def _span(cell: Tag, attribute: str) -> int:
    try:
        return max(1, min(int(str(cell.get(attribute) or 1).strip()), _MAX_SPAN))
    except ValueError:
        return 1


def _take_rowspan(line: list[str], below: dict[int, tuple[int, str]]) -> None:
    """Fill the next column of `line` from the cell above that spans down into it."""
    left, text = below.pop(len(line))
    if left > 1:
        below[len(line)] = (left - 1, text)
    line.append(text)
