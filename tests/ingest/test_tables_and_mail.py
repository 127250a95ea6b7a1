"""Tables that keep their headers (XLSX, CSV, HTML, DOCX), HTML page chrome, and e-mails
(.eml, .msg) with their headers and attachments; fixtures made by `tests/make_fixtures.py`."""

from __future__ import annotations

import datetime as dt
import zipfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest
from docx.oxml import OxmlElement
from docx.oxml.ns import qn

from llamafarm.config.models import Database
from llamafarm.documents import ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.parsers import PARSERS, excel
from llamafarm.rag.cache import ModelCache
from llamafarm.rag.embedders import UniversalEmbedder
from llamafarm.rag.retrieval import Search, Strategies
from llamafarm.rag.stores import ChromaStore

FIXTURES = Path(__file__).parent.parent / "fixtures"
MAIL_HEADERS = {
    "from": "Ada Lovelace <ada@example.org>",
    "to": "Farm team <team@example.org>, bob@example.org",
    "cc": "carol@example.org",
    "date": "2024-03-28T09:30:00+00:00",
    "subject": "Harvest figures for March",
}


def parse(parser: str, path: Path, config: dict[str, Any] | None = None) -> ParsedDocument:
    return PARSERS[parser](config).parse(path, filename=path.name)


def written(tmp_path: Path, name: str, data: str) -> Path:
    path = tmp_path / name
    path.write_text(data, encoding="utf-8")
    return path


# --- spreadsheets --------------------------------------------------------------------------


def test_each_block_of_a_sheet_has_its_own_title_and_header() -> None:
    document = parse("ExcelParser", FIXTURES / "two-blocks-per-sheet.xlsx")
    first, second, third = document.sections
    assert first.text.split("\n") == [
        "Key figures 2022",
        "Key figures 2022 — Sales, H1 2022: 2,870; Sales, H2 2022: 3,010",
        "Key figures 2022 — Costs, H1 2022: 1,940; Costs, H2 2022: 2,050",
        "Key figures 2022 — Staff, H1 2022: 41; Staff, H2 2022: 44",
    ]
    assert second.text.split("\n") == [
        "Key figures 2023",
        "Key figures 2023 — Sales, H1 2023: 3,190; Sales, H2 2023: 3,420",
        "Key figures 2023 — Costs, H1 2023: 2,110; Costs, H2 2023: 2,260",
        "Key figures 2023 — Staff, H1 2023: 46; Staff, H2 2023: 48",
    ]
    assert (first.page, first.heading, first.metadata) == (
        1,
        "Key figures",
        {"sheet": "Key figures", "table": "Key figures 2022"},
    )
    assert second.metadata == {"sheet": "Key figures", "table": "Key figures 2023"}
    assert (third.page, third.heading) == (2, "Headcount")
    chunks = chunk_document(document)
    assert [c.metadata.get("table") for c in chunks] == [
        "Key figures 2022",
        "Key figures 2023",
        "Headcount by region",
    ]
    assert chunks[1].metadata["heading"] == "Key figures"
    assert chunks[1].metadata["sheet"] == "Key figures"


def test_grouped_header_of_merged_cells_names_each_column() -> None:
    headcount = parse("ExcelParser", FIXTURES / "two-blocks-per-sheet.xlsx").sections[2]
    assert headcount.text.split("\n") == [
        "Headcount by region",
        "Headcount by region — Europe, 2022 H1: 40; Europe, 2022 H2: 42; "
        "Europe, 2023 H1: 45; Europe, 2023 H2: 47",
        "Headcount by region — Americas, 2022 H1: 30; Americas, 2022 H2: 31; "
        "Americas, 2023 H1: 33; Americas, 2023 H2: 36",
    ]


@pytest.mark.timeout(20)  # reading the declared range instead took minutes of CPU
def test_cells_are_read_within_the_data_not_the_declared_dimension() -> None:
    path = FIXTURES / "dimension-claims-a-million-cells.xlsx"
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    assert b'<dimension ref="A1:XFD1048576"/>' in sheet
    assert b'<c r="XFD1048576"/>' in sheet  # openpyxl's iter_rows pads every row up to it
    assert path.stat().st_size < 4096
    document = parse("ExcelParser", path)
    assert document.text == "Item: Apples; Count: 12\nItem: Pears; Count: 7"
    assert document.sections[0].metadata == {"sheet": "Stock"}


def test_csv_blocks_titles_and_a_grouped_header(tmp_path: Path) -> None:
    path = written(
        tmp_path,
        "report.csv",
        "Milk per farm\n,2022,,2023,\nFarm,Spring,Autumn,Spring,Autumn\n"
        'Hill,"1,200",980,"1,310","1,005"\n,,,,\nContacts\nName,Phone\nAnn,555-0101\n',
    )
    document = parse("CSVParser", path)
    assert [s.text for s in document.sections] == [
        "Milk per farm\nMilk per farm — Hill, 2022 Spring: 1,200; Hill, 2022 Autumn: 980; "
        "Hill, 2023 Spring: 1,310; Hill, 2023 Autumn: 1,005",
        "Contacts\nContacts — Name: Ann; Phone: 555-0101",
    ]
    assert [s.metadata for s in document.sections] == [
        {"table": "Milk per farm"},
        {"table": "Contacts"},
    ]
    assert document.metadata == {
        "format": "csv",
        "rows": 2,
        "columns": "Farm, 2022 Spring, 2022 Autumn, 2023 Spring, 2023 Autumn",
    }


def test_csv_without_header_keeps_rows_as_they_are(tmp_path: Path) -> None:
    path = written(tmp_path, "pairs.csv", "Blues,STL,1\nFlyers,PHI,2\n")
    assert parse("CSVParser", path).text == "Blues; STL; 1\nFlyers; PHI; 2"
    path = written(tmp_path, "named.csv", "team,city\nBlues,STL\n")
    assert parse("CSVParser", path, {"has_header": False}).text == "team; city\nBlues; STL"


# --- HTML ----------------------------------------------------------------------------------


def test_malformed_html_table_pairs_cells_with_columns_and_chrome_is_dropped() -> None:
    document = parse("HTMLParser", FIXTURES / "malformed-table.html")
    assert document.metadata == {
        "format": "html",
        "title": "Quarterly report | Example Farm Co-op",
    }
    assert [s.heading for s in document.sections] == ["Quarterly report 2023"]
    assert document.text == (
        "Quarterly report 2023\n\n"
        "Milk deliveries rose in every quarter.\n\n"
        "Q1, Milk (litres): 12,400; Q1, Farms: 31\n"
        "Q2, Milk (litres): 13,050; Q2, Farms: 32\n\n"
        "Figures are provisional."
    )
    for chrome in ("cookies", "About us", "Home", "Privacy policy", "©"):
        assert chrome not in document.text
    chunk = chunk_document(document)[0]
    assert chunk.metadata["title"] == "Quarterly report | Example Farm Co-op"


def test_html_title_heads_a_page_without_h1(tmp_path: Path) -> None:
    page = (
        "<html><head><title>Opening hours</title></head><body>"
        '<div id="onetrust-consent-sdk">Manage consent</div>'
        '<div class="gdpr-notice">We value your privacy</div>'
        '<p>Open daily from 8 to 18.</p><p class="cookie-card">Oat cookies: 2 €</p>'
        '<div class="site-footer">Imprint</div></body></html>'
    )
    document = parse("HTMLParser", written(tmp_path, "hours.html", page))
    assert [(s.heading, s.text) for s in document.sections] == [
        ("Opening hours", "Opening hours\n\nOpen daily from 8 to 18.\n\nOat cookies: 2 €")
    ]
    assert document.metadata["title"] == "Opening hours"


def test_html_table_header_from_markup_with_spans_and_caption(tmp_path: Path) -> None:
    page = (
        "<html><body><table><caption>Eggs sold</caption>"
        '<thead><tr><th rowspan="2">Farm</th><th colspan="2">2023</th></tr>'
        "<tr><th>Q1</th><th>Q2</th></tr></thead>"
        "<tbody><tr><td>Hill</td><td>400</td><td>450</td></tr>"
        '<tr><td>Vale</td><td colspan="2">closed</td></tr></tbody></table></body></html>'
    )
    text = parse("HTMLParser", written(tmp_path, "eggs.html", page)).text
    assert text == (
        "Eggs sold — Farm: Hill; 2023 Q1: 400; 2023 Q2: 450\n"
        "Eggs sold — Farm: Vale; 2023 Q1: closed"
    )


# --- DOCX ----------------------------------------------------------------------------------


def test_docx_table_rows_name_their_columns(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Key figures", level=1)
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(
        table.rows,
        (
            ("Metric", "H1 2023", "H2 2023"),
            ("Sales", "3,190", "3,420"),
            ("Costs", "2,110", "2,260"),
        ),
        strict=True,
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.save(str(tmp_path / "figures.docx"))
    parsed = parse("DocxParser", tmp_path / "figures.docx")
    assert parsed.text == (
        "Key figures\n\n"
        "Sales, H1 2023: 3,190; Sales, H2 2023: 3,420\n"
        "Costs, H1 2023: 2,110; Costs, H2 2023: 2,260"
    )


# --- e-mail --------------------------------------------------------------------------------


def test_eml_headers_body_and_attachments_as_their_own_documents() -> None:
    document = parse("EmlParser", FIXTURES / "mail-with-attachments.eml")
    assert document.metadata == {
        "format": "eml",
        "title": "Harvest figures for March",
        **MAIL_HEADERS,
        "attachments": "fields.csv, silos.xlsx",
    }
    headers, body, fields, silos = document.sections
    assert headers.text == (
        "From: Ada Lovelace <ada@example.org>\n"
        "To: Farm team <team@example.org>, bob@example.org\n"
        "Cc: carol@example.org\n"
        "Date: 2024-03-28T09:30:00+00:00\n"
        "Subject: Harvest figures for March"
    )
    assert body.heading == "Harvest figures for March"
    assert body.text.startswith("Hello team,\n\nthe March harvest came in above plan.")
    assert "<p>" not in document.text  # the plain part, not the HTML alternative
    assert (
        fields.text
        == "Field: North; Crop: Wheat; Tonnes: 42\nField: South; Crop: Barley; Tonnes: 37"
    )
    assert fields.metadata == {
        **MAIL_HEADERS,
        "attachment": "fields.csv",
        "attachment_format": "csv",
    }
    assert silos.text == "Storage: Silo A; Capacity: 120\nStorage: Silo B; Capacity: 80"
    assert (silos.heading, silos.metadata["sheet"]) == ("silos.xlsx: Silos", "Silos")
    chunk = chunk_document(document)[-1]
    assert chunk.metadata["attachment"] == "silos.xlsx"
    assert chunk.metadata["from"] == "Ada Lovelace <ada@example.org>"


def test_eml_attachments_and_headers_can_be_left_out() -> None:
    config = {"extract_attachments": False, "extract_headers": False}
    document = parse("EmlParser", FIXTURES / "mail-with-attachments.eml", config)
    assert len(document.sections) == 1
    assert document.sections[0].metadata == MAIL_HEADERS
    assert "attachments" not in document.metadata


def test_eml_html_only_body_and_unparsed_attachment(tmp_path: Path) -> None:
    message = (
        "From: shop@example.org\r\nSubject: Receipt\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><body><nav>Menu</nav><p>Thanks for your order of 3 pears.</p></body></html>\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="../../logo.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
    )
    path = tmp_path / "receipt.eml"
    path.write_bytes(message.encode())
    document = parse("EmlParser", path)
    assert [s.text for s in document.sections] == [
        "From: shop@example.org\nSubject: Receipt",
        "Thanks for your order of 3 pears.",
    ]
    assert document.metadata["attachments_unread"] == "logo.bin"


def test_text_that_is_no_email_fails(tmp_path: Path) -> None:
    path = written(tmp_path, "notes.eml", "just some notes\nabout nothing\n")
    with pytest.raises(ParseFailed, match="is not an e-mail"):
        parse("EmlParser", path)


def test_msg_headers_body_and_attachment_parsed_by_its_format() -> None:
    document = parse("MsgParser", FIXTURES / "msg-with-attachment.msg")
    headers = {
        "from": "Grace Hopper <grace@example.org>",
        "to": "Dairy team <dairy@example.org>",
        "date": "2024-04-02T07:15:00+00:00",
        "subject": "Milking rota for April",
    }
    assert document.metadata == {
        "format": "msg",
        "title": "Milking rota for April",
        **headers,
        "attachments": "rota.csv",
    }
    _, body, rota = document.sections
    assert (
        body.text
        == "Hi all,\n\nthe April milking rota is attached. Swap shifts by Friday.\n\nGrace"
    )
    assert body.metadata == headers
    assert rota.text == (
        "Day: Monday; Morning: Ann; Evening: Bob\nDay: Tuesday; Morning: Cy; Evening: Dee"
    )
    assert rota.metadata == {**headers, "attachment": "rota.csv", "attachment_format": "csv"}


# --- retrieval -----------------------------------------------------------------------------


def test_hybrid_search_finds_the_right_years_row_first(tmp_path: Path) -> None:
    """The issue's question: both years have a Sales row; the 2023 one must come first."""
    document = parse("ExcelParser", FIXTURES / "two-blocks-per-sheet.xlsx")
    chunks = chunk_document(document)
    texts = [chunk.text for chunk in chunks]
    embedder = UniversalEmbedder({"model": "all-MiniLM-L6-v2"})
    store = ChromaStore(path=tmp_path / "store", collection_name="sheets")
    ids = [f"chunk-{i}" for i in range(len(chunks))]
    store.replace({"dataset": "d"}, ids, texts, embedder.embed(texts), [c.metadata for c in chunks])
    strategies = Strategies(
        Database.model_validate(
            {
                "name": "db",
                "type": "ChromaStore",
                "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder"}],
            }
        )
    )
    search = Search(
        store=store,
        embedder=embedder,
        strategy=lambda name: strategies.get(name, inner=True),
        reranker=ModelCache().reranker,
    )
    for question, row, table in (
        ("What were the sales in H1 2023?", "Sales, H1 2023: 3,190", "Key figures 2023"),
        ("sales in the first half of 2022", "Sales, H1 2022: 2,870", "Key figures 2022"),
    ):
        hits = strategies.get("hybrid").retrieve(search, question, top_k=3)
        assert row in hits[0].text
        assert hits[0].metadata["table"] == table


def test_html_row_labels_in_th_name_their_values(tmp_path: Path) -> None:
    page = (
        "<html><body><table><tr><th>Population</th><td>1,200</td></tr>"
        "<tr><th>Area</th><td>14 km²</td></tr></table></body></html>"
    )
    text = parse("HTMLParser", written(tmp_path, "town.html", page)).text
    assert text == "Population: 1,200\nArea: 14 km²"


def test_xlsx_figures_and_dates_as_excel_shows_them(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Day", "Share", "Revenue", "Checked"])
    sheet.append([dt.date(2024, 3, 1), 0.125, 1234.5, dt.datetime(2024, 3, 1, 9, 30)])
    sheet["B2"].number_format = "0.0%"
    sheet["C2"].number_format = "#,##0.00"
    book.save(tmp_path / "shares.xlsx")
    text = parse("ExcelParser", tmp_path / "shares.xlsx").text
    assert text == "Day: 2024-03-01; Share: 12.5%; Revenue: 1,234.50; Checked: 2024-03-01 09:30"


def test_xlsx_title_merged_across_the_whole_row_and_a_sparse_sheet_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Stock"
    sheet["A1"] = "Stock on hand"
    sheet.merge_cells("A1:XFD1")
    sheet.append(["Item", "Count"])
    sheet.append(["Apples", 12])
    book.save(tmp_path / "stock.xlsx")
    document = parse("ExcelParser", tmp_path / "stock.xlsx")
    assert document.text == "Stock on hand\nStock on hand — Item: Apples; Count: 12"

    monkeypatch.setattr(excel, "MAX_GRID_CELLS", 4)  # three rows by two columns of values
    with pytest.raises(ParseFailed, match="sheet 'Stock' spreads its values over 3 rows and 2"):
        parse("ExcelParser", tmp_path / "stock.xlsx")


def test_forwarded_message_is_parsed_as_an_eml_of_its_own(tmp_path: Path) -> None:
    inner = EmailMessage()
    inner["From"] = "vet@example.org"
    inner["Subject"] = "Herd check"
    inner.set_content("All 40 cows are healthy.")
    outer = EmailMessage()
    outer["From"] = "ada@example.org"
    outer["Subject"] = "Fwd: Herd check"
    outer.set_content("See below.")
    outer.add_attachment(inner)
    path = tmp_path / "fwd.eml"
    path.write_bytes(bytes(outer))
    document = parse("EmlParser", path)
    forwarded = [s for s in document.sections if s.metadata.get("attachment")]
    assert [(s.heading, s.text) for s in forwarded] == [
        ("Herd check.eml: Headers", "From: vet@example.org\nSubject: Herd check"),
        ("Herd check.eml: Herd check", "All 40 cows are healthy."),
    ]
    assert forwarded[1].metadata["subject"] == "Herd check"  # the forwarded message's own
    assert forwarded[1].metadata["attachment_format"] == "eml"


def test_docx_rows_marked_to_repeat_as_header_are_the_header(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    rows = (("Sieve", "10", "20"), ("Sample A", "12", "30"), ("Sample B", "8", "41"))
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    marker = OxmlElement("w:tblHeader")
    table.rows[0]._tr.get_or_add_trPr().append(marker)
    document.save(str(tmp_path / "sieves.docx"))
    # Column names that look like figures: only the marker tells this row is the header.
    assert parse("DocxParser", tmp_path / "sieves.docx").text == (
        "Sample A, 10: 12; Sample A, 20: 30\nSample B, 10: 8; Sample B, 20: 41"
    )
    marker.set(qn("w:val"), "false")
    document.save(str(tmp_path / "sieves.docx"))
    assert parse("DocxParser", tmp_path / "sieves.docx").text == (
        "Sieve; 10; 20\nSample A; 12; 30\nSample B; 8; 41"
    )
