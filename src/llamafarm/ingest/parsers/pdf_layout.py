"""A PDF page's words, placed by pdfplumber, put back into the text a reader sees.

Words are joined from characters by their positions (kerning gaps inside a word are not
spaces), grouped into lines, split into columns at a gutter that no line crosses, and read
column by column; ruled tables become Markdown rows. Lines repeated at the top or bottom of
most pages (running headers, footers, page numbers) are dropped by `drop_furniture`, and line-end
hyphenation is rejoined by `paragraphs`.

Hand-written on top of pdfplumber because no maintained library does columns, furniture and
hyphenation together: pdfminer.six's layout analysis orders columns but splits kerned words
("Ta b l e", "S u m m a r y") on the fixtures; pypdf's layout mode keeps the columns side by
side on each line.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

WORD_GAP = 0.2
"""A gap wider than this share of the font size starts a new word. Measured: 0.2 keeps every
word of a LaTeX paper that writes no space characters (802 words; pdfplumber's default of a
fixed 3 pt glued 143 pairs, 0.25 glued 26) and joins kerning gaps of 0.14 em."""
MIN_GUTTER = 8.0
"""Points of empty page between two columns, at least."""
FURNITURE_LINES = 2
"""Lines at the top and at the bottom of a page that may be running headers or footers."""
FURNITURE_WINDOW = 4
"""Pages on each side compared with a page to find its running lines."""

_DIGITS = re.compile(r"\d+")
_ROMAN = re.compile(r"^[ivxlcdm]+$", re.IGNORECASE)
_HYPHENATED = re.compile(r"(\w)-$")
# A bullet (•, ▪, ◦, ●, -, en dash, *) or "1." / "a)" and a space.
_LIST_ITEM = re.compile(r"^(?:[\u2022\u25aa\u25e6\u25cf\-\u2013*]|\d{1,3}[.)]|[a-z][.)])\s")


@dataclass
class Line:
    text: str
    top: float
    bottom: float
    x0: float
    column: int = 0
    """0: spans the page (or there are no columns); 1: left column; 2: right column."""
    table: bool = False
    """A Markdown table, kept as its own paragraph and never rejoined."""


def page_lines(page: Any) -> list[Line]:
    """The page's lines in reading order: tables as Markdown, columns one after the other."""
    tables = [t for t in page.find_tables() if _real_table(t)]
    boxes = [t.bbox for t in tables]
    words = [
        w
        for w in page.extract_words(x_tolerance_ratio=WORD_GAP, y_tolerance=3)
        if w.get("upright", True) and not any(_inside(w, box) for box in boxes)
    ]
    rows = _rows(words)
    gutter = _gutter(rows, float(page.width))
    lines: list[Line] = []
    for row in rows:
        lines.extend(_split(row, gutter))
    for table in tables:
        markdown = table_markdown(table.extract())
        if markdown:
            x0, top, _x1, bottom = table.bbox
            lines.append(Line(markdown, float(top), float(bottom), float(x0), table=True))
    return _reading_order(lines)


def _real_table(table: Any) -> bool:
    cells = table.extract()
    return len(cells) >= 2 and max((len(row) for row in cells), default=0) >= 2


def _inside(word: dict[str, Any], box: tuple[float, float, float, float]) -> bool:
    x0, top, x1, bottom = box
    middle_x = (word["x0"] + word["x1"]) / 2
    middle_y = (word["top"] + word["bottom"]) / 2
    return bool(x0 <= middle_x <= x1 and top <= middle_y <= bottom)


def _rows(words: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Words sharing a baseline, each row left to right, rows top to bottom."""
    rows: list[list[dict[str, Any]]] = []
    for word in sorted(words, key=lambda w: (round(w["bottom"]), w["x0"])):
        if rows and abs(rows[-1][0]["bottom"] - word["bottom"]) <= 0.5 * _height(word):
            rows[-1].append(word)
        else:
            rows.append([word])
    return [sorted(row, key=lambda w: w["x0"]) for row in rows]


def _height(word: dict[str, Any]) -> float:
    return max(float(word["bottom"] - word["top"]), 1.0)


def _gutter(rows: list[list[dict[str, Any]]], width: float) -> float | None:
    """The x of a vertical gap between two columns, or None on a one-column page.

    A gutter is a band in the middle half of the page, at least `MIN_GUTTER` wide, that at most
    a fifth of the lines cross (titles and running headers span it), with text on both sides in
    at least three lines."""
    if len(rows) < 4:
        return None
    # covered[r, x]: whether a word of row r covers the point x; then, for each band of
    # MIN_GUTTER points, how many rows some word of theirs reaches into.
    points = int(width) + 2
    covered = np.zeros((len(rows), points), dtype=np.int32)
    for index, row in enumerate(rows):
        for word in row:
            start = min(max(int(word["x0"]) + 1, 0), points - 1)
            covered[index, start : max(start + 1, min(int(word["x1"]), points))] = 1
    running = np.concatenate([np.zeros((len(rows), 1), np.int32), covered.cumsum(axis=1)], axis=1)
    gap = int(MIN_GUTTER)
    lefts = np.arange(int(width * 0.25), int(width * 0.75))
    crossing = ((running[:, lefts + gap] - running[:, lefts]) > 0).sum(axis=0)
    if not len(crossing):
        return None
    at = int(np.argmin(crossing))
    if crossing[at] > len(rows) / 5:
        return None
    x = float(lefts[at]) + MIN_GUTTER / 2
    both = sum(any(w["x1"] <= x for w in row) and any(w["x0"] >= x for w in row) for row in rows)
    return x if both >= 3 else None


def _split(row: list[dict[str, Any]], gutter: float | None) -> list[Line]:
    if gutter is None or any(w["x0"] < gutter < w["x1"] for w in row):
        return [_line(row, 0)]
    left = [w for w in row if w["x1"] <= gutter]
    right = [w for w in row if w["x0"] >= gutter]
    return [_line(part, column) for part, column in ((left, 1), (right, 2)) if part]


def _line(words: list[dict[str, Any]], column: int) -> Line:
    return Line(
        " ".join(w["text"] for w in words),
        min(float(w["top"]) for w in words),
        max(float(w["bottom"]) for w in words),
        min(float(w["x0"]) for w in words),
        column,
    )


def _reading_order(lines: list[Line]) -> list[Line]:
    """Top to bottom; between two page-wide lines, the left column before the right one."""
    ordered: list[Line] = []
    band: list[Line] = []
    for line in sorted(lines, key=lambda ln: (ln.top, ln.x0)):
        if line.column == 0:
            ordered.extend(sorted(band, key=lambda ln: (ln.column, ln.top)))
            band = []
            ordered.append(line)
        else:
            band.append(line)
    ordered.extend(sorted(band, key=lambda ln: (ln.column, ln.top)))
    return ordered


def table_markdown(rows: list[list[str | None]]) -> str:
    """Markdown rows: the first row as the header, then a separator, then the body."""
    cells = [[_cell(c) for c in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


def _cell(value: str | None) -> str:
    return " ".join((value or "").split()).replace("|", "\\|")


def drop_furniture(pages: list[list[Line]]) -> list[list[Line]]:
    """Each page without the running headers, footers and page numbers that repeat on pages.

    A line among the first or last `FURNITURE_LINES` of a page is furniture when a line of the
    same text stands at the same height on at least half of the nearby pages (up to
    `FURNITURE_WINDOW` each side); numbers may differ only as page numbers do, by the distance
    between the pages ("Page 7" / "Page 8"), so a total at the foot of a form ("Total 1,204" /
    "Total 2,518") is kept."""
    if len(pages) < 2:
        return pages
    margins = [_margin(lines) for lines in pages]
    kept = []
    for index, lines in enumerate(pages):
        near = range(
            max(0, index - FURNITURE_WINDOW), min(len(pages), index + FURNITURE_WINDOW + 1)
        )
        others = [other for other in near if other != index]
        needed = max(1.0, len(others) / 2)
        furniture = {
            id(line)
            for line in margins[index]
            if sum(
                any(_repeats(line, index, seen, other) for seen in margins[other])
                for other in others
            )
            >= needed
        }
        kept.append([line for line in lines if id(line) not in furniture])
    return kept


def _margin(lines: list[Line]) -> list[Line]:
    by_place = sorted((ln for ln in lines if not ln.table), key=lambda ln: ln.top)
    if len(by_place) <= FURNITURE_LINES * 2:
        return by_place
    return by_place[:FURNITURE_LINES] + by_place[-FURNITURE_LINES:]


def _repeats(line: Line, page: int, other: Line, other_page: int) -> bool:
    """The same running line on two pages: same place, same words, numbers that differ only
    by the pages' distance (or roman page numbers)."""
    if abs(line.top - other.top) > 6:
        return False
    a, b = line.text.strip().lower(), other.text.strip().lower()
    if _ROMAN.match(a) and _ROMAN.match(b):
        return True
    if _DIGITS.sub("#", a) != _DIGITS.sub("#", b):
        return False
    step = other_page - page
    return all(
        int(y) in (int(x), int(x) + step)
        for x, y in zip(_DIGITS.findall(a), _DIGITS.findall(b), strict=True)
    )


def paragraphs(lines: list[Line]) -> list[str]:
    """Lines joined into paragraphs: a new one after a gap taller than a line, a column change
    or a list item; line-end hyphens before a lower-case letter rejoined ("ef-" + "ficient")."""
    if not lines:
        return []
    heights = [ln.bottom - ln.top for ln in lines if not ln.table]
    line_height = statistics.median(heights) if heights else 10.0
    found: list[list[str]] = []
    previous: Line | None = None
    for line in lines:
        new = (
            previous is None
            or line.table
            or previous.table
            or line.column != previous.column
            or line.top - previous.bottom > 0.8 * line_height
            or line.top < previous.top
            or _LIST_ITEM.match(line.text) is not None
        )
        if new:
            found.append([line.text])
        else:
            found[-1].append(line.text)
        previous = line
    return [_join(parts) for parts in found]


def _join(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        if _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


def rejoin_hyphens(text: str) -> str:
    """OCR'd or plain lines: a word broken by a hyphen at a line end, rejoined."""
    return re.sub(r"(\w)-\n(?=[a-z])", r"\1", text)
