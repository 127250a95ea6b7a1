"""Makes the OCR and PDF-layout fixtures in tests/fixtures/ (run once; the outputs are committed).

    .venv/bin/python tests/make_ocr_pdf_fixtures.py

Needs Pillow and reportlab (a dev dependency). Each output is described in tests/fixtures/README.md.
"""

# ruff: noqa: RUF001  (the garbage text layer is mojibake on purpose)
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

HERE = Path(__file__).parent / "fixtures"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"  # Debian's fonts-dejavu-core


def text_image(lines: list[str], *, width: int = 900, size: int = 30) -> Image.Image:
    """Black text on white, as a scanner at about 150 dpi would see a printed page."""
    # A book face as printed pages have. Pillow's bundled default font sets spaces so narrow
    # that the recogniser runs words together ("Invoice2041waspaid").
    font = ImageFont.truetype(FONT, size=size)
    height = 40 + len(lines) * int(size * 1.6)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((30, 20 + row * int(size * 1.6)), line, fill=0, font=font)
    return image


SCAN_LINES = [
    "Invoice 2041 was paid in full",
    "on the third of March by the",
    "Riverside Library Foundation.",
]
PNG_LINES = ["Scanned receipts are searchable", "after optical character recognition."]


def scanned_pdf() -> None:
    # Pillow writes each image as a page with no text layer: what a scanner produces.
    text_image(SCAN_LINES).save(HERE / "scanned.pdf", resolution=150)


def text_png() -> None:
    text_image(PNG_LINES).save(HERE / "text.png", optimize=True)


GARBAGE = [  # mojibake on purpose
    "Ãƒâ€ž 3$# ,% &*Â§ ~^Ã¿ Ã¾Ã½",
    "Ã°Ã¦ %%$ Â¤Â¤ ^^ Ã¸Ã¸ ~~ Ã¯Â»Â¿",
    "@@ ÃƒÂ© Ã¢â‚¬ #$%&",
]
LAYER = ["Invoice 2041 was paid in full", "on the third of March by the", "Riverside Library Fund."]


def layered_scan(name: str, title: str, layer: list[str]) -> None:
    """A scan with an invisible text layer, as scanner software writes: `layer` is its text."""
    image = text_image(SCAN_LINES)
    canvas = Canvas(str(HERE / name), pagesize=(image.width / 2, image.height / 2))
    canvas.setTitle(title)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    canvas.drawImage(ImageReader(buffer), 0, 0, image.width / 2, image.height / 2)
    text = canvas.beginText(10, image.height / 2 - 20)
    text.setTextRenderMode(3)  # invisible, like an OCR layer
    text.setFont("Helvetica", 10)
    for line in layer:
        text.textLine(line)
    canvas.drawText(text)
    canvas.showPage()
    canvas.save()


LEFT = [
    "The committee met four times this year.",
    "Its new filing system proved highly ef-",
    "ficient and saved the staff many hours",
    "of work each week. Volunteers helped",
    "sort the older records by hand.",
]
RIGHT = [
    "Membership grew to 412 households,",
    "the highest number since the society",
    "was founded. Dues remain unchanged",
    "for the coming year.",
]
PAGE_TWO = [
    "The second half of the year brought a",
    "new exhibition on river trade, which",
    "drew visitors from neighbouring towns.",
]
TABLE = [("Quarter", "Visitors", "Events"), ("Q1", "1,204", "3"), ("Q2", "2,518", "5")]
HEADER = "Annual Report of the Riverside Historical Society"


def two_column_pdf() -> None:
    """Two pages: running header and page-number footer, two columns on page one with a
    hyphenated line end, a word set with tracking (letter-spaced), a ruled table on page two,
    and printed page labels that start at 7."""
    canvas = Canvas(str(HERE / "two-column.pdf"), pagesize=A4)
    canvas.setTitle("Annual Report")
    canvas.addPageLabel(0, style="D", start=7)  # pages print as 7 and 8
    width, height = A4
    for index in range(2):
        canvas.setFont("Helvetica", 9)
        canvas.drawCentredString(width / 2, height - 40, HEADER)
        canvas.drawCentredString(width / 2, 30, str(7 + index))
        canvas.setFont("Helvetica", 11)
        if index == 0:
            _column(canvas, 60, height - 110, LEFT)
            _column(canvas, 320, height - 110, RIGHT)
            tracked = canvas.beginText(60, height - 250)
            tracked.setFont("Helvetica-Bold", 12)
            tracked.setCharSpace(1.5)
            tracked.textLine("Summary")
            canvas.drawText(tracked)
            # Glyphs placed one by one with kerning gaps, as typesetters write them: readers see
            # "Table 1 shows how we perform", text extractors often "Ta b l e" and "p erform".
            kerned = canvas.beginText(60, height - 275)
            kerned.setFont("Helvetica", 11)
            kerned.setCharSpace(0)
            kerned._code.append("[(T) 60 (a) -140 (b) -140 (l) -140 (e) ( 1 shows how we )] TJ")
            kerned._code.append("[(p) -140 (erform)] TJ")
            canvas.drawText(kerned)
        else:
            _column(canvas, 60, height - 110, PAGE_TWO)
            _table(canvas, 60, height - 200)
        canvas.showPage()
    canvas.save()


def _column(canvas: Canvas, x: float, y: float, lines: list[str]) -> None:
    text = canvas.beginText(x, y)
    text.setFont("Helvetica", 11)
    text.setLeading(14)
    for line in lines:
        text.textLine(line)
    canvas.drawText(text)


def _table(canvas: Canvas, x: float, top: float) -> None:
    widths = [100, 100, 100]
    row_height = 20
    for row, cells in enumerate(TABLE):
        y = top - row * row_height
        left = x
        for cell, w in zip(cells, widths, strict=True):
            canvas.rect(left, y - row_height, w, row_height)
            canvas.drawString(left + 6, y - 14, cell)
            left += w


if __name__ == "__main__":
    scanned_pdf()
    text_png()
    layered_scan("garbage-layer.pdf", "Scan with a garbage text layer", GARBAGE)
    # The layer differs from the image in its last word, so a test can tell which was read.
    layered_scan("ocr-layer.pdf", "Scan with a text layer", LAYER)
    two_column_pdf()
