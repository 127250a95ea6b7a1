"""Each parser on real fixture documents and on small files written here; selection by config."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

import llamafarm.config
from llamafarm.config import parse_config, render_template
from llamafarm.config.loader import read_document
from llamafarm.config.models import DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers import FORMATS, PARSERS, parse_file, select_parser
from llamafarm.ingest.parsers.text import TextParser

FIXTURES = Path(__file__).parent.parent / "fixtures"


def parse(parser: str, name: str, config: dict[str, Any] | None = None) -> ParsedDocument:
    return PARSERS[parser](config).parse(FIXTURES / name, filename=name)


def parse_bytes(
    tmp_path: Path, parser: str, name: str, data: bytes, config: dict[str, Any] | None = None
) -> ParsedDocument:
    path = tmp_path / name
    path.write_bytes(data)
    return PARSERS[parser](config).parse(path, filename=name)


def fails(parser: str, path: Path, match: str) -> None:
    with pytest.raises(ParseFailed, match=match) as caught:
        PARSERS[parser]().parse(path, filename=path.name)
    assert path.name in caught.value.detail


# --- PDF ---------------------------------------------------------------------------------


def test_pdf_with_empty_user_password_decrypts_into_one_section_per_page() -> None:
    document = parse("PDFParser", "copy-protected.pdf")
    assert [s.page for s in document.sections] == [1, 2]
    assert document.metadata == {"format": "pdf", "pages": 2}
    # The ligature in "Uniﬁed" comes back as plain letters, so the word can be found.
    assert document.sections[0].text.startswith("LayoutParser: A Unified Toolkit for Deep")
    assert "table detection [26]" in document.sections[1].text
    assert "table detection [26]" not in document.sections[0].text


def test_pdf_that_needs_a_password_fails_clearly() -> None:
    fails("PDFParser", FIXTURES / "password.pdf", "encrypted and needs a password")


def test_image_only_pdf_without_ocr_fails_instead_of_returning_nothing() -> None:
    with pytest.raises(ParseFailed, match=r"no extractable text \(scanned/image-only"):
        parse("PDFParser", "scanned.pdf", {"use_ocr": False})


@pytest.mark.parametrize(
    "data", [b"", b"%PDF-1.4\nnot really a pdf", (FIXTURES / "password.pdf").read_bytes()[:3000]]
)
def test_corrupt_pdf_fails_cleanly(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "broken.pdf").write_bytes(data)
    fails("PDFParser", tmp_path / "broken.pdf", "not a readable PDF")


# --- DOCX --------------------------------------------------------------------------------


def test_docx_paragraphs_with_header_and_footer_once() -> None:
    document = parse("DocxParser", "handbook-1p.docx")
    text = document.text
    assert "The United States Trustee appoints and supervises standing trustees" in text
    assert text.startswith("US Trustee Handbook\n\n")
    assert text.endswith("\n\nCopyright")
    assert text.count("US Trustee Handbook") == 1
    assert "A. PURPOSE" in text  # the tab after "A." became a space
    assert document.metadata["format"] == "docx"


def test_docx_tables_interleave_with_paragraphs_nested_and_merged_cells() -> None:
    text = parse("DocxParser", "docx-tables.docx").text
    assert text == (
        "Simple uniform table\n\n"
        "Header Col 1: Lorem ipsum; Header Col 2: A link example\n\n"
        "Nested Table\n\n"
        "a: d; >b<: e: g&t; f: h; c: i\na: j; >b<: k; c: l\n\n"
        "Table with merged cells\n\n"
        # `a` spans the header and the first row, `b` two columns of the header, `e` two cells.
        "a: a; b: c; b: d\na: e; b: d"
    )


def test_docx_headings_start_sections_and_merged_cells_appear_once() -> None:
    document = parse("DocxParser", "docling__word_tables.docx")
    assert [s.heading for s in document.sections] == ["Test with tables"]
    text = document.text
    assert "Header 0.0: Cell 1.0; Header 0.1: Merged Cell 1.1 1.2; Header 0.3: Cell 1.3" in text
    # Two tables hold this merged cell; each renders it once, not once per spanned column.
    assert text.count("Merged Cell 1.1 1.2") == 2
    # A cell merged down two rows belongs to both: each row names it.
    assert "Header 0.0: Cell 2.0; Header 0.1: Merged Cell 1.1 2.1; Header 0.2: Cell 2.2" in text
    assert text.count("Merged Cell 1.1 2.1") == 4


def test_docx_headers_and_footers_with_their_tables() -> None:
    text = parse("DocxParser", "docx-hdrftr.docx").text
    assert text.index("First header para") < text.index("Main document") < text.index("para1")
    assert "Table cell1; Table cell2" in text
    assert text.count("para1") == 1


@pytest.mark.parametrize("parser,name", [("DocxParser", "x.docx"), ("PPTXParser", "x.pptx")])
def test_office_file_that_is_not_a_package_fails(tmp_path: Path, parser: str, name: str) -> None:
    (tmp_path / name).write_bytes(b"just some text")
    fails(parser, tmp_path / name, "not a valid")


@pytest.mark.parametrize(
    "parser,name,match",
    [
        ("DocxParser", "x.docx", "not a readable Word document"),
        ("PPTXParser", "x.pptx", "not a readable PowerPoint file"),
        ("ExcelParser", "x.xlsx", "not a readable Excel workbook"),
        ("EPUBParser", "x.epub", "not a readable EPUB"),
    ],
)
def test_zip_without_the_format_inside_fails(
    tmp_path: Path, parser: str, name: str, match: str
) -> None:
    with zipfile.ZipFile(tmp_path / name, "w") as archive:
        archive.writestr("hello.txt", "hello")
    fails(parser, tmp_path / name, match)


# --- XLSX --------------------------------------------------------------------------------


def test_excel_one_section_per_sheet_rows_with_header() -> None:
    document = parse("ExcelParser", "stanley-cups.xlsx")
    assert [(s.page, s.heading) for s in document.sections] == [
        (1, "Stanley Cups"),
        (2, "Stanley Cups Since 67"),
    ]
    assert document.metadata == {"format": "xlsx", "pages": 2}
    first, second = (s.text for s in document.sections)
    assert first.split("\n") == [
        "Stanley Cups",
        "Stanley Cups — Team: Blues; Location: STL; Stanley Cups: 1",
        "Stanley Cups — Team: Flyers; Location: PHI; Stanley Cups: 2",
        "Stanley Cups — Team: Maple Leafs; Location: TOR; Stanley Cups: 13",
    ]
    assert "Since 67 — Team: Maple Leafs; Location: TOR; Stanley Cups: 0" in second


def test_excel_title_above_the_table_and_offset_columns() -> None:
    title, table = parse("ExcelParser", "docling__xlsx_05_table_with_title.xlsx").sections
    # The title sits a blank row above the table: its own line, and the title of each row.
    assert title.text == "Number of freshwater ducks per year"
    assert table.text.startswith(
        "Number of freshwater ducks per year — Year: 2019; Freshwater Ducks: 120\n"
    )
    assert "Number of freshwater ducks per year — Year: 2024; Freshwater Ducks: 180" in table.text


def test_excel_every_cell_of_a_sheet_without_header() -> None:
    text = parse("ExcelParser", "more-than-1k-cells.xlsx").text
    assert text.count("x") == 1040
    assert ": " not in text  # repeated values are no header


def test_encrypted_workbook_fails_clearly() -> None:
    fails("ExcelParser", FIXTURES / "password_protected.xlsx", "encrypted/password-protected")


def test_legacy_binary_office_file_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "old.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    fails("ExcelParser", tmp_path / "old.xlsx", "legacy binary Office file")


# --- HTML --------------------------------------------------------------------------------


def test_html_in_windows_1252_decodes_correctly() -> None:
    document = parse("HTMLParser", "fake-html-cp1252.html")
    assert document.sections[0].heading == "My First Heading"
    text = document.text
    for phrase in ("Die schöne Frau", "15,50 €", "El niño comió paella con ñoquis", "¡Qué rico!"):
        assert phrase in text
    assert "ń" not in text  # the cp1250 reading of ñ


def test_html_main_content_not_navigation() -> None:
    document = parse("HTMLParser", "docling__wiki_duck.html")
    assert document.metadata["title"] == "Duck - Wikipedia"
    headings = [s.heading for s in document.sections]
    assert headings[:3] == ["Duck", "Etymology", "Taxonomy"]
    text = document.text
    assert "Duck is the common name for numerous species of waterfowl" in text
    for chrome in ("Jump to content", "Main page", "Personal tools", "Donate", "[edit]"):
        assert chrome not in text


def test_html_declared_charset_scripts_and_tables(tmp_path: Path) -> None:
    page = (
        '<html><head><meta charset="iso-8859-1"><title>T</title><style>p {}</style></head>'
        "<body><nav>Home | About</nav><main><h2>Prices</h2><p>Café € 2</p>"
        "<script>var x = 1;</script><table><tr><th>Item</th><th>Cost</th></tr>"
        "<tr><td>Tea</td><td>3</td></tr></table></main><footer>(c) 2024</footer></body></html>"
    ).encode("cp1252")
    document = parse_bytes(tmp_path, "HTMLParser", "page.html", page)
    assert document.sections[0].heading == "Prices"
    # No <h1>: the page title leads the text of the first heading.
    assert document.text == "T\n\nPrices\n\nCafé € 2\n\nItem: Tea; Cost: 3"


# --- PPTX --------------------------------------------------------------------------------


def test_pptx_one_section_per_slide_with_tables() -> None:
    document = parse("PPTXParser", "sample-presentation.pptx")
    assert [s.page for s in document.sections] == [1, 2, 3, 4]
    assert document.metadata["pages"] == 4
    assert [s.heading for s in document.sections][:2] == [
        "Title Slide",
        "This is the first content slide",
    ]
    assert "With a sub-bullet" in document.sections[1].text
    assert "1 | A1 | B1 | C1" in document.sections[3].text


def test_pptx_vertical_tabs_become_line_breaks() -> None:
    document = parse("PPTXParser", "docling__powerpoint_bad_text.pptx")
    assert "\x0b" not in document.text
    assert document.sections[0].heading == "X-Library"
    assert "X-Library\nThe fully customisable and copyright-free\n" in document.text


# --- EPUB --------------------------------------------------------------------------------


def test_epub_chapters_in_spine_order() -> None:
    document = parse("EPUBParser", "winter-sports.epub")
    assert 330_000 < len(document.text) < 350_000
    assert document.metadata["title"] == "Winter Sports in Switzerland"
    headings = [s.heading or "" for s in document.sections]
    chapters = [h for h in headings if h.startswith("CHAPTER")]
    assert chapters[:3] == [
        "CHAPTER I THE SUN-SEEKER",
        "CHAPTER II RINKS AND SKATERS",
        "CHAPTER III TEES AND CRAMPITS",
    ]
    assert len(chapters) == 8
    assert "Part I" not in headings  # sub-headings stay inside their chapter
    chapter_one = document.sections[headings.index("CHAPTER I THE SUN-SEEKER")].text
    assert "Shakespeare once made an allusion" in chapter_one


# --- Text, Markdown, CSV, JSON ---------------------------------------------------------------


def test_text_in_legacy_encoding_with_control_characters(tmp_path: Path) -> None:
    data = "Café crème\x0cpage two\x0b line\r\n\r\n\r\n\r\nend  \t here".encode("cp1252")
    document = parse_bytes(tmp_path, "TextParser", "notes.txt", data)
    assert document.text == "Café crème\npage two\nline\n\nend here"
    assert document.metadata == {"format": "text"}


def test_text_encoding_from_config(tmp_path: Path) -> None:
    data = "Привет, мир".encode("koi8-r")
    document = parse_bytes(tmp_path, "TextParser", "ru.txt", data, {"encoding": "koi8-r"})
    assert document.text == "Привет, мир"


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 8,
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8" * 20,
    ],
)
def test_binary_file_named_txt_is_refused(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "blob.txt").write_bytes(data)
    fails("TextParser", tmp_path / "blob.txt", "binary")


@pytest.mark.parametrize("data", [b"", b"  \n\t\n  "])
def test_empty_file_is_never_an_empty_document(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "empty.txt").write_bytes(data)
    fails("TextParser", tmp_path / "empty.txt", "no extractable text")


def test_markdown_sections_per_heading(tmp_path: Path) -> None:
    source = (
        "---\ntitle: Guide\n---\nIntro line.\n\n# Install\n\nRun it.\n\n"
        "```sh\n# not a heading\n```\n\nUsage\n-----\n\nCall it.\n\n## Options ##\n\n- one\n- two\n"
    )
    document = parse_bytes(tmp_path, "MarkdownParser", "guide.md", source.encode())
    assert document.metadata == {"format": "markdown", "title": "Guide"}
    assert [(s.heading, s.text) for s in document.sections] == [
        (None, "Intro line."),
        ("Install", "Install\n\nRun it.\n\n```sh\n# not a heading\n```"),
        ("Usage", "Usage\n\nCall it."),
        ("Options", "Options\n\n- one\n- two"),
    ]


def test_csv_rows_with_header_and_sniffed_delimiter(tmp_path: Path) -> None:
    data = 'name;city;note\nAlice;Paris;"likes\ncafé"\nBob;;\n'.encode("cp1252")
    document = parse_bytes(tmp_path, "CSVParser", "people.csv", data)
    assert document.text == "name: Alice; city: Paris; note: likes café\nname: Bob"
    assert document.metadata == {"format": "csv", "rows": 2, "columns": "name, city, note"}


def test_csv_delimiter_from_config(tmp_path: Path) -> None:
    data = b"a|b\n1,5|2\n"
    document = parse_bytes(tmp_path, "CSVParser", "pipes.csv", data, {"delimiter": "|"})
    assert document.text == "a: 1,5; b: 2"


def test_json_object_flattened_to_paths(tmp_path: Path) -> None:
    value = {"name": "lf", "server": {"port": 8000, "tls": False, "hosts": ["a", "b"]}, "x": None}
    document = parse_bytes(tmp_path, "JSONParser", "c.json", json.dumps(value).encode())
    assert document.text == (
        "name: lf\nserver.port: 8000\nserver.tls: false\nserver.hosts.0: a\nserver.hosts.1: b"
    )


def test_json_records_and_json_lines_one_section_each(tmp_path: Path) -> None:
    records = [{"id": 1, "title": "First"}, {"id": 2, "title": "Second"}]
    array = parse_bytes(tmp_path, "JSONParser", "a.json", json.dumps(records).encode())
    lines = "\n".join(json.dumps(r) for r in records).encode()
    jsonl = parse_bytes(tmp_path, "JSONParser", "a.jsonl", lines)
    for document in (array, jsonl):
        assert [s.text for s in document.sections] == [
            "id: 1\ntitle: First",
            "id: 2\ntitle: Second",
        ]
    assert jsonl.metadata == {"format": "jsonl", "records": 2}


def test_invalid_json_fails_with_position(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"a": 1,}')
    fails("JSONParser", tmp_path / "bad.json", "not valid JSON: .*line 1 column 9")


# --- Registry and selection ----------------------------------------------------------------


def test_registry_names_and_default_extensions() -> None:
    assert sorted(cls.__name__ for cls in FORMATS) == sorted(
        [
            "TextParser",
            "MarkdownParser",
            "PDFParser",
            "DocxParser",
            "ExcelParser",
            "CSVParser",
            "HTMLParser",
            "PPTXParser",
            "JSONParser",
            "EPUBParser",
            "MsgParser",
            "EmlParser",
            "ImageParser",
        ]
    )
    for cls in FORMATS:
        assert cls.extensions and all(ext.startswith(".") for ext in cls.extensions)


def strategy(*parsers: dict[str, Any]) -> DataProcessingStrategy:
    return DataProcessingStrategy.model_validate({"name": "docs", "parsers": list(parsers)})


def test_select_parser_by_pattern_case_insensitively() -> None:
    chosen = strategy(
        {"type": "PDFParser", "file_include_patterns": ["*.pdf"]},
        {"type": "TextParser", "file_include_patterns": ["*.txt", "*.log"]},
    )
    assert select_parser(chosen, "REPORT.PDF").type == "PDFParser"
    assert select_parser(chosen, "server.log").type == "TextParser"


def test_select_parser_lowest_priority_then_list_order() -> None:
    chosen = strategy(
        {"type": "TextParser", "file_include_patterns": ["*.md"], "priority": 50},
        {"type": "MarkdownParser", "file_include_patterns": ["*.md"], "priority": 10},
        {"type": "HTMLParser", "file_include_patterns": ["*.md"], "priority": 10},
    )
    assert select_parser(chosen, "a.md").type == "MarkdownParser"


def test_parser_without_patterns_takes_its_default_extensions() -> None:
    chosen = strategy({"type": "MarkdownParser"}, {"type": "CSVParser"})
    assert select_parser(chosen, "notes.markdown").type == "MarkdownParser"
    assert select_parser(chosen, "data.tsv").type == "CSVParser"


def test_no_matching_parser_names_strategy_file_and_patterns() -> None:
    chosen = strategy({"type": "PDFParser", "file_include_patterns": ["*.pdf"]})
    with pytest.raises(ParseFailed) as caught:
        select_parser(chosen, "photo.png")
    assert (
        caught.value.detail == "No parser in strategy 'docs' handles 'photo.png' (patterns: *.pdf)"
    )


def test_unknown_parser_type_fails_naming_it() -> None:
    chosen = strategy({"type": "OCRParser", "file_include_patterns": ["*.png"]})
    with pytest.raises(
        ParseFailed,
        match=r"handles 'photo.png': Unknown parser type 'OCRParser' \(known: CSVParser",
    ):
        select_parser(chosen, "photo.png")


def test_parse_file_passes_the_config(tmp_path: Path) -> None:
    path = tmp_path / "upload-1234"
    path.write_bytes("Grüße".encode("utf-16"))
    config = ParserConfig(type="TextParser", config={"chunk_size": 10, "encoding": "utf-16"})
    assert parse_file(config, path, filename="greeting.txt").text == "Grüße"


def test_unknown_configured_encoding_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")
    with pytest.raises(ParseFailed, match="Unknown encoding 'klingon'"):
        TextParser({"encoding": "klingon"}).parse(tmp_path / "a.txt", filename="a.txt")


@pytest.mark.parametrize(
    "name,parser",
    [
        ("copy-protected.pdf", "PDFParser"),
        ("handbook-1p.docx", "DocxParser"),
        ("fake-html-cp1252.html", "HTMLParser"),
    ],
)
def test_rag_template_strategy_parses_fixtures(name: str, parser: str) -> None:
    template = Path(llamafarm.config.__file__).parent / "templates" / "rag.yaml"
    config = parse_config(read_document(template))
    assert config.rag is not None
    chosen = select_parser(config.rag.data_processing_strategies[0], name)
    assert chosen.type == parser
    assert parse_file(chosen, FIXTURES / name, filename=name).text


@pytest.mark.parametrize(
    "fixture",
    sorted(
        p.name
        for p in (Path(__file__).parent.parent / "fixtures").iterdir()
        if p.is_file() and p.suffix != ".md"
    ),
)
def test_every_fixture_parses_the_same_from_a_stored_blob(fixture: str, tmp_path: Path) -> None:
    """The pipeline parses `raw/{sha256}`, a path without the file's extension."""
    source = Path(__file__).parent.parent / "fixtures" / fixture
    blob = tmp_path / "0123abcd"
    shutil.copyfile(source, blob)
    strategy = parse_config(render_template("rag", namespace="a", name="b")).rag
    assert strategy is not None
    parser = select_parser(strategy.data_processing_strategies[0], fixture)
    try:
        expected: object = parse_file(parser, source, filename=fixture).text
    except ParseFailed as exc:
        expected = type(exc)
    try:
        got: object = parse_file(parser, blob, filename=fixture).text
    except ParseFailed as exc:
        got = type(exc)
    assert got == expected
