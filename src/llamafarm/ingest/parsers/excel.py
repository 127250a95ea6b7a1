"""Excel (.xlsx) with openpyxl, read-only: one section per table block, rows naming their columns.

Cells are read as the sheet's XML holds them, never over its declared dimension: a sheet may
declare `A1:XFD1048576` (17 billion cells) around a handful of values.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any, ClassVar, cast

import openpyxl
from openpyxl.cell.read_only import ReadOnlyCell
from openpyxl.utils.cell import range_boundaries
from openpyxl.worksheet._reader import WorkSheetParser

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import check_package, clean_inline, finish
from llamafarm.ingest.parsers.tables import render_grid

_DECIMALS = re.compile(r"\.(0+)")
MAX_GRID_CELLS = 50_000_000
"""Rows by columns that hold values in one sheet; past it the sheet is refused, not padded."""
Bounds = tuple[int, int, int, int]
"""A merged range: min_col, min_row, max_col, max_row (1-based)."""


class ExcelParser:
    extensions: ClassVar[tuple[str, ...]] = (".xlsx", ".xlsm")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        check_package(path, filename, "XLSX")
        sections: list[Section] = []
        # Workbooks written by other tools often lack a default style; openpyxl warns and copes.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Workbook contains no default style", UserWarning)
            # A file object, not the path: stored files have no extension, and openpyxl
            # refuses paths that do not end in .xlsx.
            handle = path.open("rb")
            try:
                workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
            except Exception as exc:  # openpyxl raises KeyError, ValueError... on broken parts
                handle.close()
                raise ParseFailed(f"'{filename}' is not a readable Excel workbook: {exc}") from exc
            try:
                for number, sheet in enumerate(workbook.worksheets, 1):
                    sections.extend(_sheet_sections(sheet, number))
                sheets = len(workbook.worksheets)
            except Exception as exc:
                raise ParseFailed(f"'{filename}' is not a readable Excel workbook: {exc}") from exc
            finally:
                workbook.close()
                handle.close()
        return finish(sections, filename, {"format": "xlsx", "pages": sheets})


def _sheet_sections(sheet: Any, number: int) -> list[Section]:
    """One section per block of the sheet, headed by the sheet's name."""
    rows, merges = _read_sheet(sheet)
    grid, joined = _grid(rows, merges, sheet.title)
    sections = []
    for table in render_grid(grid, joined=joined):
        metadata: dict[str, MetadataValue] = {"sheet": sheet.title}
        if table.title:
            metadata["table"] = table.title
        sections.append(Section("\n".join(table.lines), number, sheet.title, metadata))
    return sections


def _read_sheet(sheet: Any) -> tuple[list[tuple[int, dict[int, str]]], list[Bounds]]:
    """The rows that hold a value (row number, column → text) and the merged ranges.

    openpyxl's own read-only parser, without `iter_rows`: that yields every row up to the last
    one the sheet lists, each padded to the declared width (an empty cell at XFD1048576 made
    17 billion), where this reads the cells the XML holds and skips the empty ones.
    """
    book = sheet.parent
    rows: list[tuple[int, dict[int, str]]] = []
    with sheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            sheet._shared_strings,
            data_only=book.data_only,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        for index, cells in parser.parse():
            values = {}
            for cell in cells:
                if cell["value"] is not None and (text := _cell(ReadOnlyCell(sheet, **cell))):
                    values[cell["column"]] = text
            if values:
                rows.append((index, values))
    merges = []
    for merged in parser.merged_cells.mergeCell if parser.merged_cells else ():
        try:
            bounds = range_boundaries(merged.ref or "")
        except ValueError:
            continue  # a broken reference merges nothing
        if all(isinstance(b, int) for b in bounds):  # not a whole row or column
            merges.append(cast(Bounds, bounds))
    return rows, merges


def _grid(
    rows: list[tuple[int, dict[int, str]]], merges: list[Bounds], title: str
) -> tuple[list[list[str]], frozenset[tuple[int, int]]]:
    """The cells as a grid of the rows and columns that hold values (a gap of empty rows kept
    as one blank row, which separates blocks), merged ranges filled; the positions right of a
    merged range's first column are returned as joined to their left neighbour."""
    used = sorted({column for _, values in rows for column in values})
    if len(rows) * len(used) > MAX_GRID_CELLS:
        raise ParseFailed(
            f"sheet '{title}' spreads its values over {len(rows):,} rows and {len(used):,} "
            f"columns, more than {MAX_GRID_CELLS:,} cells"
        )
    position = {column: i for i, column in enumerate(used)}
    grid: list[list[str]] = []
    row_at: dict[int, int] = {}
    previous = 0
    for index, values in rows:
        if previous and index > previous + 1:
            grid.append([])
        row_at[index] = len(grid)
        line = [""] * (position[max(values)] + 1)
        for column, text in values.items():
            line[position[column]] = text
        grid.append(line)
        previous = index
    numbers = sorted(row_at)
    joined = set()
    for min_col, min_row, max_col, max_row in merges:
        first = row_at.get(min_row)
        if first is None or min_col not in position or not grid[first][position[min_col] :]:
            continue
        value = grid[first][position[min_col]]
        columns = used[bisect_left(used, min_col) : bisect_right(used, max_col)]
        for number in numbers[bisect_left(numbers, min_row) : bisect_right(numbers, max_row)]:
            line = grid[row_at[number]]
            line.extend([""] * (position[columns[-1]] + 1 - len(line)))
            for column in columns:
                line[position[column]] = value
                if column != min_col:
                    joined.add((row_at[number], position[column]))
    return grid, frozenset(joined)


def _cell(cell: Any) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return _number(value, str(getattr(cell, "number_format", "General") or "General"))
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return clean_inline(str(value))


def _number(value: float, number_format: str) -> str:
    """The figure as Excel shows it for the common formats: thousands separators, decimals,
    percentages (`#,##0` → `3,190`, `0.0%` → `12.5%`); `General` and others as the plain value."""
    section = number_format.split(";", 1)[0]
    if number_format == "General" or not any(ch in section for ch in "0#"):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return format(value, ".15g") if isinstance(value, float) else str(value)
    decimals = len(match.group(1)) if (match := _DECIMALS.search(section)) else 0
    if "%" in section:
        return f"{value * 100:.{decimals}f}%"
    return f"{value:,.{decimals}f}" if "," in section else f"{value:.{decimals}f}"
