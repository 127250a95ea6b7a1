"""PDF text as a reader sees it, and OCR of scans and images.

The fixtures are made by tests/make_ocr_pdf_fixtures.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from llamafarm.config.models import universal_rag
from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.parsers import PARSERS, select_parser
from llamafarm.ingest.parsers.ocr import MIN_TEXT_QUALITY, text_quality
from llamafarm.ingest.parsers.pdf_layout import Line, drop_furniture, table_markdown

FIXTURES = Path(__file__).parent.parent / "fixtures"
SCAN = "Invoice 2041 was paid in full\non the third of March by the\nRiverside Library Foundation."


def parse(parser: str, name: str, config: dict[str, Any] | None = None) -> ParsedDocument:
    return PARSERS[parser](config).parse(FIXTURES / name, filename=name)


@pytest.fixture(scope="module")
def report() -> ParsedDocument:
    return parse("PDFParser", "two-column.pdf")


# --- PDF text layer -----------------------------------------------------------------------


def test_two_columns_read_left_then_right_with_hyphens_and_kerning_joined(
    report: ParsedDocument,
) -> None:
    assert report.sections[0].text == (
        "The committee met four times this year. Its new filing system proved highly "
        "efficient and saved the staff many hours of work each week. Volunteers helped sort "
        "the older records by hand.\n\n"
        "Summary\n\n"
        "Table 1 shows how we perform\n\n"
        "Membership grew to 412 households, the highest number since the society was "
        "founded. Dues remain unchanged for the coming year."
    )


def test_running_header_and_page_numbers_are_dropped(report: ParsedDocument) -> None:
    assert "Annual Report of the Riverside Historical Society" not in report.text
    # Each page starts and ends with its body: no header first, no page number ("7") last.
    assert [(s.text[:16], s.text[-16:]) for s in report.sections] == [
        ("The committee me", "r the coming year."[-16:]),
        ("The second half ", "| Q2 | 2,518 | 5 |"[-16:]),
    ]


def test_ruled_table_becomes_markdown_rows(report: ParsedDocument) -> None:
    assert report.sections[1].text == (
        "The second half of the year brought a new exhibition on river trade, which drew "
        "visitors from neighbouring towns.\n\n"
        "| Quarter | Visitors | Events |\n"
        "|---|---|---|\n"
        "| Q1 | 1,204 | 3 |\n"
        "| Q2 | 2,518 | 5 |"
    )


def test_chunks_carry_the_page_and_its_printed_label(report: ParsedDocument) -> None:
    assert report.metadata == {"format": "pdf", "pages": 2, "title": "Annual Report"}
    chunks = chunk_document(report, chunk_size=2000, chunk_overlap=0)
    assert [c.metadata for c in chunks] == [
        {"chunk_index": 0, "page": 1, "page_label": "7"},
        {"chunk_index": 1, "page": 2, "page_label": "8"},
    ]


def test_furniture_needs_repetition_across_pages() -> None:
    def page(number: int, *, total: str) -> list[Line]:
        lines = [Line("Annual Report 2023", 10, 20, 50)]
        lines += [
            Line(f"Text {word}", 100 + 20 * n, 110 + 20 * n, 50)
            for n, word in enumerate(["one", "two", "three", "four"][number:])
        ]
        return [*lines, Line(total, 700, 710, 50), Line(str(number + 7), 800, 810, 300)]

    first, second = page(0, total="Total 1,204"), page(1, total="Total 2,518")
    # A single page cannot tell a running header from a title: it keeps it.
    assert drop_furniture([first]) == [first]
    # The header and the page numbers (7, 8) go; the totals at the same height stay: their
    # numbers differ by more than the pages do.
    kept = drop_furniture([first, second])
    assert [[line.text for line in lines] for lines in kept] == [
        ["Text one", "Text two", "Text three", "Text four", "Total 1,204"],
        ["Text two", "Text three", "Text four", "Total 2,518"],
    ]


def test_table_markdown_pads_rows_and_escapes_pipes() -> None:
    assert table_markdown([["a|b", None], ["1"], [None, None]]) == (
        "| a\\|b |  |\n|---|---|\n| 1 |  |"
    )


# --- OCR ----------------------------------------------------------------------------------


def test_scanned_pdf_is_read_by_ocr_and_its_chunks_say_so() -> None:
    document = parse("PDFParser", "scanned.pdf")
    assert document.text == SCAN
    assert document.metadata["ocr_pages"] == 1
    chunks = chunk_document(document)
    assert [c.metadata for c in chunks] == [
        {"chunk_index": 0, "ocr": True, "page": 1, "page_label": "1"}
    ]


def test_garbage_text_layer_is_replaced_by_ocr() -> None:
    document = parse("PDFParser", "garbage-layer.pdf")
    assert document.text == SCAN
    assert document.sections[0].metadata["ocr"] is True


def test_good_text_layer_is_kept_unless_use_ocr_is_set() -> None:
    # The invisible layer ends "Fund." where the image says "Foundation.".
    layered = parse("PDFParser", "ocr-layer.pdf")
    assert layered.text.endswith("Riverside Library Fund.")
    assert "ocr" not in layered.sections[0].metadata
    forced = parse("PDFParser", "ocr-layer.pdf", {"use_ocr": True})
    assert forced.text == SCAN
    assert forced.sections[0].metadata["ocr"] is True


def test_use_ocr_false_fails_a_scan_clearly() -> None:
    with pytest.raises(ParseFailed, match=r"'scanned.pdf' has no extractable text .*use_ocr"):
        parse("PDFParser", "scanned.pdf", {"use_ocr": False})
    with pytest.raises(ParseFailed, match=r"'text.png' is an image, read only by OCR"):
        parse("ImageParser", "text.png", {"use_ocr": False})


def test_png_is_read_by_ocr() -> None:
    document = parse("ImageParser", "text.png")
    assert document.text == "Scanned receipts are searchable\nafter optical character recognition."
    assert document.metadata == {"format": "png", "pages": 1, "ocr_pages": 1}
    assert [c.metadata for c in chunk_document(document)] == [
        {"chunk_index": 0, "ocr": True, "page": 1}
    ]


@pytest.mark.parametrize("name", ["photo.png", "scan.JPG", "a.jpeg", "b.tif", "c.TIFF", "d.webp"])
def test_image_uploads_have_a_parser_in_the_built_in_strategy(name: str) -> None:
    assert select_parser(universal_rag(), name).type == "ImageParser"


def line_image(text: str) -> Image.Image:
    image = Image.new("L", (420, 60), 255)
    ImageDraw.Draw(image).text((10, 12), text, fill=0, font=ImageFont.load_default(size=28))
    return image


@pytest.fixture(scope="module")
def two_page_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiff") / "pages.tiff"
    first, second = line_image("First page"), line_image("Second page")
    first.save(path, save_all=True, append_images=[second])
    return path


def test_multi_page_tiff_gives_a_section_per_page(two_page_tiff: Path) -> None:
    document = PARSERS["ImageParser"]().parse(two_page_tiff, filename="pages.tiff")
    assert [(s.page, s.text) for s in document.sections] == [
        (1, "First page"),
        (2, "Second page"),
    ]


def test_ocr_page_limit_fails_the_file_naming_it(two_page_tiff: Path) -> None:
    parser = PARSERS["ImageParser"]({"ocr_max_pages": 1})
    with pytest.raises(ParseFailed, match=r"OCR on more than 1 pages \(ocr_max_pages\)"):
        parser.parse(two_page_tiff, filename="pages.tiff")


def test_ocr_time_budget_fails_the_file_naming_it(two_page_tiff: Path) -> None:
    parser = PARSERS["ImageParser"]({"ocr_timeout_s": 0.001})
    with pytest.raises(ParseFailed, match=r"longer than 0.001 s \(ocr_timeout_s\) after 1 pages"):
        parser.parse(two_page_tiff, filename="pages.tiff")


@pytest.mark.parametrize("value", [0, -1, "many", True])
def test_bad_ocr_limits_are_refused(value: object) -> None:
    with pytest.raises(ParseFailed, match="ocr_max_pages must be a positive number"):
        PARSERS["ImageParser"]({"ocr_max_pages": value})


def test_unreadable_image_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    with pytest.raises(ParseFailed, match=r"'broken\.png' is not a readable image"):
        PARSERS["ImageParser"]().parse(tmp_path / "broken.png", filename="broken.png")


def test_blank_image_fails_saying_no_text_was_found(tmp_path: Path) -> None:
    Image.new("L", (200, 100), 255).save(tmp_path / "blank.png")
    with pytest.raises(ParseFailed, match=r"'blank\.png' has no text that OCR could read"):
        PARSERS["ImageParser"]().parse(tmp_path / "blank.png", filename="blank.png")


@pytest.mark.parametrize(
    "text,good",
    [
        ("The committee met four times this year.", True),
        ("Größe über Straße 12,5 % — naïve café", True),
        ("Привет, мир! Это тест.", True),
        ("日本語のテキストです。これは例です。", True),
        ("Ãƒâ€ž 3$# ,% &*Â§ ~^Ã¿ Ã¾Ã½", False),
        ("(cid:12)(cid:13) (cid:5)(cid:7) (cid:9)", False),
        ("xqzvt brwkp 3#@! ^^&& ~~~", False),
    ],
)
def test_text_quality_tells_real_text_from_garbage(text: str, good: bool) -> None:
    assert (text_quality(text) >= MIN_TEXT_QUALITY) is good
