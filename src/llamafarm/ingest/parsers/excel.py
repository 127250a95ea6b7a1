"""Excel (.xlsx) with openpyxl, read-only: one section per table block, rows naming their columns.

Cells are read as the sheet's XML holds them, never over its declared dimension: a sheet may
declare `A1:XFD1048576` (17 billion cells) around a handful of values, and openpyxl's read-only
mode pads every row to the declared size unless the dimension is reset.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, ClassVar, cast

import openpyxl  # no stubs in the dev dependencies
from openpyxl.utils.cell import range_boundaries

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import check_package, clean_inline, finish
from llamafarm.ingest.parsers.tables import render_grid

_MERGE_TAG = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}mergeCell"
_DECIMALS = re.compile(r"\.(0+)")


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
    merges = _merged_ranges(sheet)
    sheet.reset_dimensions()  # read the cells that are there, not the declared range
    rows = [[_cell(cell) for cell in row] for row in sheet.iter_rows()]
    joined = _fill_merges(rows, merges)
    sections = []
    for table in render_grid(rows, joined=joined):
        metadata: dict[str, MetadataValue] = {"sheet": sheet.title}
        if table.title:
            metadata["table"] = table.title
        sections.append(Section("\n".join(table.lines), number, sheet.title, metadata))
    return sections


def _merged_ranges(sheet: Any) -> list[tuple[int, int, int, int]]:
    """(min_col, min_row, max_col, max_row) of each merged range; read-only mode skips them."""
    found = []
    with sheet._get_source() as source:  # the sheet's XML part, as openpyxl itself opens it
        for _, element in ET.iterparse(source):
            if element.tag == _MERGE_TAG:
                try:
                    bounds = range_boundaries(element.get("ref") or "")
                except ValueError:
                    continue  # a broken reference merges nothing
                if all(isinstance(b, int) for b in bounds):  # not a whole row or column
                    found.append(cast(tuple[int, int, int, int], bounds))
            element.clear()
    return found


def _fill_merges(
    rows: list[list[str]], merges: list[tuple[int, int, int, int]]
) -> frozenset[tuple[int, int]]:
    """Give every cell of a merged range its value; the cells right of the first column of a
    range are returned as joined to their left neighbour. Ranges beyond the data are cut."""
    joined = set()
    width = max((len(row) for row in rows), default=0)
    for min_col, min_row, max_col, max_row in merges:
        if min_row > len(rows) or not rows[min_row - 1][min_col - 1 : min_col]:
            continue
        value = rows[min_row - 1][min_col - 1]
        stop = min(max_col, width)  # a range may run past the data: A1:XFD1 merges a title
        for r in range(min_row - 1, min(max_row, len(rows))):
            row = rows[r]
            row.extend([""] * (stop - len(row)))
            for c in range(min_col - 1, stop):
                row[c] = value
                if c > min_col - 1:
                    joined.add((r, c))
    return frozenset(joined)


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
