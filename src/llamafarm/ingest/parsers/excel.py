"""Excel (.xlsx) with openpyxl, read-only: one section per sheet, each row with its header."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import openpyxl  # no stubs in the dev dependencies

from llamafarm.documents import ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import check_package, clean_inline, finish


class ExcelParser:
    extensions: ClassVar[tuple[str, ...]] = (".xlsx", ".xlsm")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        check_package(path, filename, "XLSX")
        sections = []
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
                    rows = ([_cell(v) for v in row] for row in sheet.iter_rows(values_only=True))
                    text = render_rows(rows)
                    sections.append(Section(text, page=number, heading=sheet.title))
                sheets = len(workbook.worksheets)
            except Exception as exc:
                raise ParseFailed(f"'{filename}' is not a readable Excel workbook: {exc}") from exc
            finally:
                workbook.close()
                handle.close()
        return finish(sections, filename, {"format": "xlsx", "pages": sheets})


def render_rows(rows: Iterable[list[str]]) -> str:
    """Title lines as they are, then rows as `Header: value, ...` below the header row.

    The header is the first row with two or more filled cells, all distinct and not numbers;
    rows of a sheet without one are rendered as plain comma-separated values.
    """
    lines: list[str] = []
    header: list[str] | None = None
    for row in rows:
        filled = [value for value in row if value]
        if not filled:
            continue
        if header is None and len(filled) >= 2:
            header = row if _looks_like_header(filled) else []
            if header:
                continue  # every row below repeats these names next to its values
        if header:
            lines.append(", ".join(_pairs(row, header)))
        else:
            lines.append(", ".join(filled))
    return "\n".join(lines)


def _looks_like_header(values: Sequence[str]) -> bool:
    return len(set(values)) == len(values) and not any(_is_number(v) for v in values)


def _pairs(row: list[str], header: list[str]) -> Iterable[str]:
    for i, value in enumerate(row):
        if value:
            name = header[i] if i < len(header) else ""
            yield f"{name}: {value}" if name else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return clean_inline(str(value))


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
