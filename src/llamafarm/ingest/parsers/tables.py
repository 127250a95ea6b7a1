"""Tables as rows that name their columns: header rows, title lines and blocks, found per table.

Every table format (XLSX, CSV, HTML, DOCX) hands a grid of cell texts here. A grid is split into
blocks at blank rows (a sheet often holds several tables, each with its own title and header); in
each block, single-cell lines above the table are its title, the header is one or more rows of
names (a grouped header such as `2022 | | 2023 |` over `H1 | H2 | H1 | H2` spans two rows), and
each data row is written as `Title — Column: value; Column: value`. A table whose first column
labels rows and whose other cells are numbers is written per cell, `Sales, H1 2023: 3,190`, so a
row read on its own still says what each figure is.

Hand-written: the libraries that read tables (pandas, openpyxl) take the header as given and
know neither titles nor several tables in one sheet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

MAX_HEADER_ROWS = 3
MAX_TITLE_ROWS = 3
TITLE_SEPARATOR = " — "
_NUMBER = re.compile(r"[-+\u2212(]?[$€£¥]?\s?\d[\d,.\u00a0' ]*(?:[eE][-+]?\d+)?\s?(?:%|[$€£¥])?\)?")
_YEAR = re.compile(r"(?:19|20)\d\d")
_PLACEHOLDERS = frozenset({"-", "\u2013", "\u2014", "n/a", "na", "n.a.", "..", "\u2026", "x", "*"})
"""What a figure table writes where a figure is missing: dashes, `n/a`, an ellipsis."""


@dataclass(frozen=True)
class Table:
    """One block of a grid, rendered."""

    title: str
    """The title lines above the table (or its caption), joined by `, `; empty if none."""
    lines: list[str]
    """The title lines, then one line per data row (a grid without a header: its rows as is)."""
    columns: list[str]
    """The names the header gives each column; empty when no header was found."""
    rows: int = 0
    """Data rows: the rows below the header (every row when there is none), titles left out."""


def is_number(value: str) -> bool:
    """A figure as people write it: `3190`, `3,190`, `-4.5`, `12 %`, `$1,200`, `(450)`."""
    return bool(value) and _NUMBER.fullmatch(value.strip()) is not None


def split_blocks(rows: Iterable[Sequence[str]]) -> Iterator[tuple[int, list[list[str]]]]:
    """Runs of rows with some text, split at rows that have none, each with its first row's
    index."""
    start = 0
    current: list[list[str]] = []
    for index, row in enumerate(rows):
        if any(row):
            if not current:
                start = index
            current.append(list(row))
        elif current:
            yield start, current
            current = []
    if current:
        yield start, current


def render_grid(
    rows: Iterable[Sequence[str]],
    *,
    find_header: bool = True,
    joined: frozenset[tuple[int, int]] = frozenset(),
) -> list[Table]:
    """A sheet or CSV file: one `Table` per block; a block of title lines alone titles the next.

    `joined` holds the (row, column) positions that continue a merged cell to their left, in the
    numbering of `rows` (blank rows included).
    """
    by_row: dict[int, list[int]] = {}
    for r, c in joined:
        by_row.setdefault(r, []).append(c)
    tables: list[Table] = []
    pending = ""
    for start, found in split_blocks(rows):
        local = frozenset(
            (r - start, c) for r in range(start, start + len(found)) for c in by_row.get(r, ())
        )
        if all(len(_values(row, r, local)) <= 1 for r, row in enumerate(found)):
            lines = [_plain(row, r, local) for r, row in enumerate(found)]
            tables.append(Table("", lines, [], 0))
            pending = lines[-1] if len(lines) <= 2 else ""
            continue
        table = render_table(found, title=pending, find_header=find_header, joined=local)
        pending = ""
        tables.append(table)
    return tables


def render_table(
    rows: Sequence[Sequence[str]],
    *,
    title: str = "",
    header_rows: int | None = None,
    find_header: bool = True,
    joined: frozenset[tuple[int, int]] = frozenset(),
) -> Table:
    """One table: title lines, header rows (`header_rows` when the markup says, else found),
    then each data row naming its columns and the title."""
    width = max((len(row) for row in rows), default=0)
    grid = [[*row, *[""] * (width - len(row))] for row in rows]
    own: list[str] = []
    first = 0
    while (
        first < min(MAX_TITLE_ROWS, len(grid) - 1) and len(_values(grid[first], first, joined)) == 1
    ):
        own.append(_plain(grid[first], first, joined))  # a title line, or a caption spanning all
        first += 1
    title = ", ".join(own) or title
    body = grid[first:]
    if header_rows is not None:
        found = max(header_rows - first, 0)
    else:
        found = _header_rows(body) if find_header else 0
    found = min(found, len(body))
    if found == 0 or found == len(body):
        lines = [*own, *(_plain(row, r, joined) for r, row in enumerate(grid) if r >= first)]
        return Table(title, [line for line in lines if line], [], len(grid) - first)
    columns = _column_names(body[:found])
    data = body[found:]
    data_joined = frozenset((r - first - found, c) for r, c in joined)
    labelled = _labels_rows(columns, data)
    lines = list(own)
    group = ""
    for number, row in enumerate(data):
        if labelled and len(_values(row, number, data_joined)) == 1 and row[0] and width > 2:
            group = row[0]  # a group label inside the table: "Europe" above its countries
            lines.append(_titled(title, group))
            continue
        cells = [
            (c, columns[c], value)
            for c, value in enumerate(row)
            if value and (number, c) not in data_joined
        ]
        lines.append(_titled(_join(title, group), _row_text(cells, labelled)))
    return Table(title, [line for line in lines if line], columns, len(data))


def _titled(title: str, text: str) -> str:
    return f"{title}{TITLE_SEPARATOR}{text}" if title and text else title or text


def _join(title: str, group: str) -> str:
    return ", ".join(part for part in (title, group) if part)


def _row_text(cells: list[tuple[int, str, str]], labelled: bool) -> str:
    """`Name: value; ...`, or `Label, Name: value; ...` in a table whose first column labels."""
    if labelled and len(cells) > 1 and cells[0][0] == 0:
        label = cells[0][2]
        return "; ".join(
            f"{label}, {name}: {value}" if name else f"{label}: {value}"
            for _, name, value in cells[1:]
        )
    return "; ".join(f"{name}: {value}" if name else value for _, name, value in cells)


def _labels_rows(columns: list[str], data: list[list[str]]) -> bool:
    """Whether the first column names the rows and the others hold their figures."""
    if len(columns) < 2 or (columns[0] and len(columns) < 3):
        return False  # `Item: Apples; Count: 12` says more than `Apples, Count: 12`
    firsts = [row[0] for row in data if row[0]]
    if not firsts or any(is_number(value) for value in firsts):
        return False
    if not columns[0]:
        return True
    others = [value for row in data for value in row[1:] if value]
    return bool(others) and all(
        is_number(value) or value.lower() in _PLACEHOLDERS for value in others
    )


def _header_rows(body: list[list[str]]) -> int:
    """How many rows at the top of `body` are names, not data (0 when the first row is data)."""
    if len(body) < 2 or not _names(body[0]) or _distinct(body[0])[0].endswith(":"):
        return 0  # `Domain: | Eukaryota` labels the cell to its right: a key-value table
    found = 1
    has_figures = any(any(is_number(v) and not _YEAR.fullmatch(v) for v in row) for row in body)
    while (
        found < min(MAX_HEADER_ROWS, len(body) - 1)
        and has_figures
        and _names(body[found])
        and len(_distinct(body[found - 1])) < len(_distinct(body[found]))
    ):
        found += 1
    return found


def _names(row: list[str]) -> bool:
    """Two or more distinct names, none a figure (a year is a name: `Metric | 2022 | 2023`)."""
    values = _distinct(row)
    if len(set(values)) < 2:
        return False
    figures = [v for v in values if is_number(v)]
    if any(not _YEAR.fullmatch(v.strip()) for v in figures):
        return False
    return len(figures) < len(values) or not row[0]


def _distinct(row: list[str]) -> list[str]:
    """The filled values, a run of the same value (a merged cell) counted once."""
    values: list[str] = []
    for value in row:
        if value and (not values or values[-1] != value):
            values.append(value)
    return values


def _column_names(header: list[list[str]]) -> list[str]:
    """Each column's name: its header cells top to bottom; an upper row's name spans the
    blank cells to its right (a grouped header whose merge was lost, as in CSV)."""
    filled = [_fill_right(row) for row in header[:-1]] + [header[-1]]
    names = []
    for column in zip(*filled, strict=True):
        parts: list[str] = []
        for part in column:
            if part and part not in parts:
                parts.append(part)
        names.append(" ".join(parts))
    return names


def _fill_right(row: list[str]) -> list[str]:
    out: list[str] = []
    for value in row:
        out.append(value or (out[-1] if out else ""))
    return out


def _values(row: Sequence[str], number: int, joined: frozenset[tuple[int, int]]) -> list[str]:
    """The row's filled cells, a merged cell once."""
    return [value for c, value in enumerate(row) if value and (number, c) not in joined]


def _plain(row: Sequence[str], number: int, joined: frozenset[tuple[int, int]]) -> str:
    """The values joined by `; `, a `Label:` cell by a space to the value it labels."""
    text = ""
    for value in _values(row, number, joined):
        text += ("" if not text else " " if text.endswith(":") else "; ") + value
    return text
