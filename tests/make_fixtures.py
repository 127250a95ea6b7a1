"""Writes the table, HTML and e-mail fixtures of `tests/fixtures/` (see its README).

Run from the repository root: `python -m tests.make_fixtures`. Output is the same on every run
except for openpyxl's timestamps in two-blocks-per-sheet.xlsx (its bytes change, its text not).
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import openpyxl
from openpyxl.styles import Font

FIXTURES = Path(__file__).parent / "fixtures"

_OOXML = "application/vnd.openxmlformats"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    f'<Default Extension="rels" ContentType="{_OOXML}-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    f'ContentType="{_OOXML}-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    f'ContentType="{_OOXML}-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    "</Relationships>"
)


def minimal_xlsx(
    rows: list[list[str | int]], *, sheet: str, dimension: str, last_cell: str = ""
) -> bytes:
    """A one-sheet workbook written by hand (inline strings, no styles), declaring `dimension`
    whatever its cells are, and an empty `last_cell` after the rows if given (as a sheet that
    was formatted to its last cell has): the smallest package openpyxl and Excel open."""
    cells = []
    for r, row in enumerate(rows, 1):
        parts = []
        for c, value in enumerate(row):
            ref = f"{chr(ord('A') + c)}{r}"
            if isinstance(value, int):
                parts.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                parts.append(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
        cells.append(f'<row r="{r}">{"".join(parts)}</row>')
    if last_cell:
        row_number = last_cell.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        cells.append(f'<row r="{row_number}"><c r="{last_cell}"/></row>')
    sheet_xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dimension}"/><sheetData>{"".join(cells)}</sheetData></worksheet>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("[Content_Types].xml", _CONTENT_TYPES),
            ("_rels/.rels", _RELS),
            ("xl/workbook.xml", _WORKBOOK.format(name=sheet)),
            ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS),
            ("xl/worksheets/sheet1.xml", sheet_xml),
        ):
            archive.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def two_blocks_xlsx() -> None:
    """Key figures of 2022 and 2023 in two blocks of one sheet, each with its own title and
    header; a second sheet with a grouped header of merged cells over two rows."""
    book = openpyxl.Workbook()
    metrics = book.active
    assert metrics is not None
    metrics.title = "Key figures"
    row = 1
    for year, figures in (
        (2022, {"Sales": (2870, 3010), "Costs": (1940, 2050), "Staff": (41, 44)}),
        (2023, {"Sales": (3190, 3420), "Costs": (2110, 2260), "Staff": (46, 48)}),
    ):
        metrics.cell(row, 1, f"Key figures {year}").font = Font(bold=True)
        metrics.cell(row + 1, 1, "Metric")
        metrics.cell(row + 1, 2, f"H1 {year}")
        metrics.cell(row + 1, 3, f"H2 {year}")
        for offset, (name, (first, second)) in enumerate(figures.items(), 2):
            metrics.cell(row + offset, 1, name)
            for column, value in ((2, first), (3, second)):
                metrics.cell(row + offset, column, value).number_format = "#,##0"
        row += len(figures) + 3  # one blank row between the blocks
    regions = book.create_sheet("Headcount")
    regions["A1"] = "Headcount by region"
    regions["A2"] = "Region"
    regions.merge_cells("A2:A3")
    regions["B2"] = "2022"
    regions.merge_cells("B2:C2")
    regions["D2"] = "2023"
    regions.merge_cells("D2:E2")
    for column, half in zip("BCDE", ("H1", "H2", "H1", "H2"), strict=True):
        regions[f"{column}3"] = half
    for r, (region, *values) in enumerate(
        (("Europe", 40, 42, 45, 47), ("Americas", 30, 31, 33, 36)), 4
    ):
        regions.cell(r, 1, region)
        for c, value in enumerate(values, 2):
            regions.cell(r, c, value)
    book.properties.creator = "llamafarm tests"
    book.save(FIXTURES / "two-blocks-per-sheet.xlsx")


def million_cell_dimension_xlsx() -> None:
    """Three rows of data in a sheet that declares the whole grid, `A1:XFD1048576`, with an
    empty cell in its last row and column: read as declared, 17 billion cells."""
    rows: list[list[str | int]] = [["Item", "Count"], ["Apples", 12], ["Pears", 7]]
    data = minimal_xlsx(rows, sheet="Stock", dimension="A1:XFD1048576", last_cell="XFD1048576")
    (FIXTURES / "dimension-claims-a-million-cells.xlsx").write_bytes(data)


def malformed_html() -> None:
    """A page with its chrome (navigation, cookie banner, footer), a `<title>` and an `<h1>`,
    and a table opened inside `<center>` that closes before the table does."""
    page = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Quarterly report | Example Farm Co-op</title></head>
<body>
<div id="cookie-consent" class="cookie-banner">We use cookies to improve your experience.
<button>Accept all cookies</button></div>
<nav><a href="/">Home</a> <a href="/about">About us</a> <a href="/shop">Shop</a></nav>
<div class="breadcrumbs">Home &gt; Reports &gt; 2023</div>
<h1>Quarterly report 2023</h1>
<p>Milk deliveries rose in every quarter.</p>
<center><table border="1">
<tr><th>Quarter</th><th>Milk (litres)</th><th>Farms</th>
</center>
<tr><td>Q1</td><td>12,400</td><td>31</td>
<tr><td>Q2</td><td>13,050</td><td>32</td>
</table>
<p>Figures are provisional.</p>
<footer>© 2023 Example Farm Co-op · Privacy policy · Imprint</footer>
</body></html>
"""
    (FIXTURES / "malformed-table.html").write_text(page, encoding="utf-8")


def eml_with_attachments() -> None:
    """A plain and HTML body, a CSV and an XLSX attached."""
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.org>"
    message["To"] = "Farm team <team@example.org>, bob@example.org"
    message["Cc"] = "carol@example.org"
    message["Subject"] = "Harvest figures for March"
    message["Date"] = format_datetime(dt.datetime(2024, 3, 28, 9, 30, tzinfo=dt.UTC))
    message["Message-ID"] = "<harvest-2024-03@example.org>"
    message.set_content(
        "Hello team,\n\nthe March harvest came in above plan. The figures per field are in\n"
        "the attached sheet.\n\nBest,\nAda\n"
    )
    message.add_alternative(
        "<html><body><p>Hello team,</p><p>the March harvest came in above plan.</p></body></html>",
        subtype="html",
    )
    message.add_attachment(
        b"Field,Crop,Tonnes\nNorth,Wheat,42\nSouth,Barley,37\n",
        maintype="text",
        subtype="csv",
        filename="fields.csv",
    )
    sheet = minimal_xlsx(
        [["Storage", "Capacity"], ["Silo A", 120], ["Silo B", 80]], sheet="Silos", dimension="A1:B3"
    )
    message.add_attachment(
        sheet,
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename="silos.xlsx",
    )
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"==llamafarm-fixture-{number}==")  # random otherwise
    (FIXTURES / "mail-with-attachments.eml").write_bytes(bytes(message))


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _properties(header: bytes, fixed: dict[int, bytes], variable: dict[int, bytes]) -> bytes:
    """A MAPI `__properties_version1.0` stream: the header, then 16 bytes per property (tag,
    flags, the value itself or, for strings and binaries, their size)."""
    out = bytearray(header)
    for tag, value in fixed.items():
        out += struct.pack("<II", tag, 6) + value.ljust(8, b"\0")
    for tag, value in variable.items():
        size = len(value) + (2 if tag & 0xFFFF == 0x001F else 0)  # strings count their NUL
        out += struct.pack("<IIII", tag, 6, size, 0)
    return bytes(out)


def msg_with_attachment() -> None:
    """An Outlook message written as a compound file with extract-msg's `OleWriter`: subject,
    sender, one recipient, a submit time, a text body and a CSV attachment (MS-OXMSG layout)."""
    from extract_msg.ole_writer import OleWriter

    writer = OleWriter()
    strings = {
        0x001A001F: "IPM.Note",  # message class
        0x0037001F: "Milking rota for April",  # subject
        0x1000001F: "Hi all,\n\nthe April milking rota is attached. "
        "Swap shifts by Friday.\n\nGrace\n",
        0x0C1A001F: "Grace Hopper",  # sender name
        0x0C1F001F: "grace@example.org",  # sender address
        0x0C1E001F: "SMTP",
        0x0E04001F: "Dairy team",  # display To
        0x5D01001F: "grace@example.org",  # sender SMTP address
    }
    submitted = dt.datetime(2024, 4, 2, 7, 15, tzinfo=dt.UTC)
    filetime = int((submitted - dt.datetime(1601, 1, 1, tzinfo=dt.UTC)).total_seconds() * 10**7)
    fixed = {0x00390040: struct.pack("<Q", filetime), 0x0E060040: struct.pack("<Q", filetime)}
    variable = {tag: _utf16(text) for tag, text in strings.items()}
    header = bytes(8) + struct.pack("<IIII", 1, 1, 1, 1) + bytes(8)
    writer.addEntry("__properties_version1.0", _properties(header, fixed, variable))
    for tag, data in variable.items():
        writer.addEntry(f"__substg1.0_{tag:08X}", data)
    writer.addEntry("__nameid_version1.0", storage=True)
    for stream in ("00020102", "00030102", "00040102"):
        writer.addEntry(f"__nameid_version1.0/__substg1.0_{stream}", b"")
    recipient = "__recip_version1.0_#00000000"
    recipient_strings = {
        0x3001001F: "Dairy team",
        0x3003001F: "dairy@example.org",
        0x39FE001F: "dairy@example.org",
        0x3002001F: "SMTP",
    }
    writer.addEntry(recipient, storage=True)
    recipient_variable = {tag: _utf16(text) for tag, text in recipient_strings.items()}
    writer.addEntry(
        f"{recipient}/__properties_version1.0",
        _properties(bytes(8), {0x0C150003: struct.pack("<I", 1)}, recipient_variable),
    )
    for tag, data in recipient_variable.items():
        writer.addEntry(f"{recipient}/__substg1.0_{tag:08X}", data)
    attachment = "__attach_version1.0_#00000000"
    content = b"Day,Morning,Evening\nMonday,Ann,Bob\nTuesday,Cy,Dee\n"
    attachment_variable = {
        0x3707001F: _utf16("rota.csv"),
        0x3704001F: _utf16("rota.csv"),
        0x3703001F: _utf16(".csv"),
        0x37010102: content,
    }
    writer.addEntry(attachment, storage=True)
    writer.addEntry(
        f"{attachment}/__properties_version1.0",
        _properties(bytes(8), {0x37050003: struct.pack("<I", 1)}, attachment_variable),
    )
    for tag, data in attachment_variable.items():
        writer.addEntry(f"{attachment}/__substg1.0_{tag:08X}", data)
    writer.write(str(FIXTURES / "msg-with-attachment.msg"))


if __name__ == "__main__":
    two_blocks_xlsx()
    million_cell_dimension_xlsx()
    malformed_html()
    eml_with_attachments()
    msg_with_attachment()
