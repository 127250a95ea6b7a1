"""LlamaFarm's parser and extractor type names: each maps to ours and runs on a real document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from extract_msg import OleWriter

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import Chunk
from llamafarm.errors import ConfigInvalid, ParseFailed
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import EXTRACTORS, apply_extractors, build
from llamafarm.ingest.parsers import PARSERS, parse_file, parser_class, select_parser
from llamafarm.ingest.parsers.auto import AutoParser
from llamafarm.ingest.parsers.msg import MsgParser

FIXTURES = Path(__file__).parent.parent / "fixtures"


def write_msg(path: Path, *, subject: str, body: str, sender: str = "Alice Example") -> Path:
    """An Outlook .msg made with extract-msg's own OLE writer (it cannot write whole messages,
    so the MAPI property streams are added one by one; no .msg file was at hand to copy)."""
    writer = OleWriter()
    writer.addEntry("__properties_version1.0", bytes(32))  # a message's header, no properties
    writer.addEntry("__nameid_version1.0", storage=True)
    for tag, text in (
        ("001A001F", "IPM.Note"),  # message class
        ("0037001F", subject),
        ("0C1A001F", sender),
        ("0E04001F", "Bob Example"),  # To
        ("1000001F", body),
    ):
        writer.addEntry(f"__substg1.0_{tag}", text.encode("utf-16-le"))
    writer.write(str(path))
    return path


@pytest.fixture
def documents(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "notes.txt").write_text("Plain notes about the harbour and its fishing boats.\n")
    (tmp_path / "guide.md").write_text("# Setup\n\nInstall the pump.\n\n## Care\n\nClean it.\n")
    (tmp_path / "teams.csv").write_text("team,city\nBlues,St. Louis\nFlyers,Philadelphia\n")
    write_msg(tmp_path / "budget.msg", subject="Budget review", body="The meeting moved to Friday.")
    return {
        "pdf": FIXTURES / "copy-protected.pdf",
        "docx": FIXTURES / "handbook-1p.docx",
        "xlsx": FIXTURES / "stanley-cups.xlsx",
        "html": FIXTURES / "docling__wiki_duck.html",
        "txt": tmp_path / "notes.txt",
        "md": tmp_path / "guide.md",
        "csv": tmp_path / "teams.csv",
        "msg": tmp_path / "budget.msg",
    }


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("PDFParser_PyPDF2", "pdf", "LayoutParser"),
        ("PDFParser_LlamaIndex", "pdf", "LayoutParser"),
        ("TextParser_Python", "txt", "fishing boats"),
        ("TextParser_LlamaIndex", "txt", "fishing boats"),
        ("MarkdownParser_Python", "md", "Install the pump"),
        ("MarkdownParser_LlamaIndex", "md", "Install the pump"),
        ("CSVParser_Pandas", "csv", "Philadelphia"),
        ("CSVParser_Python", "csv", "Philadelphia"),
        ("CSVParser_LlamaIndex", "csv", "Philadelphia"),
        ("ExcelParser_OpenPyXL", "xlsx", "Maple Leafs"),
        ("ExcelParser_Pandas", "xlsx", "Maple Leafs"),
        ("ExcelParser_LlamaIndex", "xlsx", "Maple Leafs"),
        ("DocxParser_PythonDocx", "docx", "US Trustee Handbook"),
        ("DocxParser_LlamaIndex", "docx", "US Trustee Handbook"),
        ("MsgParser", "msg", "moved to Friday"),
        ("MsgParser_ExtractMsg", "msg", "moved to Friday"),
        ("UniversalParser", "docx", "US Trustee Handbook"),
        ("auto", "html", "Duck"),
        ("auto", "msg", "Budget review"),
        ("TextParser_AnyTool", "txt", "fishing boats"),  # `TextParser_*`: the format decides
    ],
)
def test_each_llamafarm_parser_name_parses_a_real_document(
    documents: dict[str, Path], name: str, kind: str, expected: str
) -> None:
    path = documents[kind]
    document = parse_file(ParserConfig(type=name), path, filename=path.name)
    assert expected in "\n".join(section.text for section in document.sections)


def test_the_msg_parser_keeps_headers_and_metadata(documents: dict[str, Path]) -> None:
    path = documents["msg"]
    document = MsgParser().parse(path, filename=path.name)
    assert document.sections[0].heading == "Headers"
    assert "From: Alice Example" in document.sections[0].text
    assert document.metadata["title"] == "Budget review"
    headerless = MsgParser({"extract_headers": False}).parse(path, filename=path.name)
    assert "From:" not in "\n".join(s.text for s in headerless.sections)


def test_a_file_that_is_not_a_msg_fails_alone(tmp_path: Path) -> None:
    fake = tmp_path / "fake.msg"
    fake.write_bytes(b"not an outlook message")
    with pytest.raises(ParseFailed, match=r"not a readable Outlook \.msg"):
        MsgParser().parse(fake, filename="fake.msg")


def test_unknown_names_map_to_nothing() -> None:
    assert parser_class("AudioParser_Whisper") is None
    assert parser_class("ImageParser_OCR") is PARSERS["ImageParser"]
    assert parser_class("DirectoryParser") is None
    assert parser_class("PDFParser_PyMuPDF") is PARSERS["PDFParser"]
    assert AutoParser.formats[".msg"] is MsgParser


def strategy(*parsers: dict[str, Any]) -> DataProcessingStrategy:
    return DataProcessingStrategy.model_validate({"name": "docs", "parsers": list(parsers)})


def test_file_extensions_and_mime_types_choose_the_parser() -> None:
    chosen = strategy(
        {"type": "TextParser_Python", "file_extensions": [".log", ".TXT"], "priority": 10},
        {"type": "CSVParser_Pandas", "mime_types": ["text/csv"]},
        {"type": "PDFParser_PyPDF2", "file_extensions": [".pdf"]},
    )
    assert select_parser(chosen, "server.log").type == "TextParser_Python"
    assert select_parser(chosen, "NOTES.txt").type == "TextParser_Python"
    assert select_parser(chosen, "data.csv").type == "CSVParser_Pandas"
    with pytest.raises(ParseFailed, match=r"patterns: \.TXT, \.log, \.pdf, text/csv\)"):
        select_parser(chosen, "photo.png")


def test_priority_picks_among_matching_parsers() -> None:
    chosen = strategy(
        {"type": "TextParser_Python", "file_include_patterns": ["*.md"], "priority": 90},
        {"type": "MarkdownParser_Python", "file_extensions": [".md"], "priority": 5},
    )
    assert select_parser(chosen, "guide.md").type == "MarkdownParser_Python"


def test_the_fallback_parser_reads_what_the_first_cannot(documents: dict[str, Path]) -> None:
    path = documents["md"]
    # The PDF parser refuses Markdown; its fallback reads it.
    config = ParserConfig(type="PDFParser_PyPDF2", fallback_parser="TextParser_Python")
    document = parse_file(config, path, filename=path.name)
    assert "Install the pump" in document.sections[0].text
    with pytest.raises(ParseFailed, match="fallback MsgParser"):
        parse_file(ParserConfig(type="PDFParser", fallback_parser="MsgParser"), path, filename="g")


def test_llamafarm_chunk_strategies_map_to_ours(documents: dict[str, Path]) -> None:
    path = documents["md"]
    document = parse_file(ParserConfig(type="auto"), path, filename=path.name)
    by_heading = chunk_document(
        document, chunk_size=100, chunk_overlap=0, chunk_strategy="headings"
    )
    assert [c.metadata.get("heading") for c in by_heading] == ["Setup", "Care"]
    assert chunk_document(document, chunk_size=100, chunk_overlap=0, chunk_strategy="semantic")


TEXT = (
    "# Quarterly Report\n\n"
    "Revenue grew 12% to $4.5 million in Q3. Contact finance@example.com or call "
    "(555) 123-4567 before March 15, 2024 at 3:30 pm. The report lives at "
    "/srv/reports/q3.pdf and s3://acme-reports/q3/summary.csv; see "
    "https://example.com/reports/q3 for details. Release v2.4.1 shipped 3 days ago and "
    "the audit takes 2 weeks.\n\n"
    "Machine learning models need training data. Training data quality matters for machine "
    "learning. Data pipelines feed machine learning models with fresh training data.\n\n"
    "| Region | Sales |\n|---|---|\n| North | 10 |\n| South | 20 |\n"
)


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("ContentStatisticsExtractor", {}, {"word_count", "flesch_reading_ease", "unique_words"}),
        ("DateTimeExtractor", {}, {"dates": "2024-03-15", "times": "3:30 pm"}),
        (
            "EntityExtractor",
            {},
            {"entities_email": "finance@example.com", "entities_percent": "12%"},
        ),
        ("HeadingExtractor", {}, {"heading": "Quarterly Report"}),
        ("KeywordExtractor", {"algorithm": "rake", "max_keywords": 3}, {"keywords"}),
        ("KeywordExtractor", {"algorithm": "yake", "max_keywords": 3}, {"keywords"}),
        ("KeywordExtractor", {"algorithm": "tfidf", "max_keywords": 3}, {"keywords"}),
        ("YAKEExtractor", {"max_keywords": 3}, {"keywords"}),
        (
            "LinkExtractor",
            {},
            {"links": "https://example.com/reports/q3", "domains": "example.com"},
        ),
        (
            "PathExtractor",
            {},
            {"file_paths": "/srv/reports/q3.pdf", "s3_paths": "s3://acme-reports/q3/summary.csv"},
        ),
        (
            "PatternExtractor",
            {"predefined_patterns": ["version", "phone"]},
            {"pattern_version": "v2.4.1", "pattern_phone": "(555) 123-4567"},
        ),
        ("SummaryExtractor", {"summary_sentences": 1}, {"summary"}),
        (
            "TableExtractor",
            {"output_format": "csv"},
            {"table_count": 1, "tables": "Region,Sales\nNorth,10\nSouth,20"},
        ),
    ],
)
def test_each_extractor_runs_on_a_document(
    name: str, config: dict[str, Any], expected: set[str] | dict[str, object]
) -> None:
    found = build(name, config).extract(Chunk(TEXT))
    if isinstance(expected, set):
        assert expected <= set(found) and all(found[k] not in ("", None) for k in expected)
    else:
        assert {k: found.get(k) for k in expected} == expected


def test_keyword_algorithms_find_the_repeated_phrase() -> None:
    chunk = Chunk(TEXT)
    # RAKE scores a phrase by its words' co-occurrence degree: long runs of content words win.
    rake = str(build("RAKEExtractor", {}).extract(chunk)["keywords"]).split(", ")
    assert rake[:2] == ["training data quality matters", "fresh training data"]
    short = str(build("RAKEExtractor", {"max_length": 2}).extract(chunk)["keywords"])
    assert short.startswith("quarterly report") and all(
        len(phrase.split()) <= 2 for phrase in short.split(", ")
    )
    paragraph = Chunk(TEXT.split("\n\n")[2])
    yake_words = build("YAKEExtractor", {"max_keywords": 3, "max_ngram_size": 2}).extract(paragraph)
    assert "machine learning" in str(yake_words["keywords"]).lower().split(", ")


def test_tfidf_weighs_words_by_the_files_other_chunks() -> None:
    chunks = [Chunk("duck duck duck swan swan"), Chunk("duck pond goose"), Chunk("duck pond heron")]
    assert build("KeywordExtractor", {"max_keywords": 1}).extract(chunks[0]) == {"keywords": "duck"}
    rules = DataProcessingStrategy.model_validate(
        {
            "name": "s",
            "parsers": [{"type": "auto"}],
            "extractors": [{"type": "TFIDFExtractor", "config": {"max_keywords": 1}}],
        }
    )
    apply_extractors(rules, "a.txt", chunks)
    # "duck" is the most frequent word but in every chunk; the rarer word outweighs it.
    assert [c.metadata["keywords"] for c in chunks] == ["swan", "goose", "heron"]


def test_the_summary_keeps_the_central_sentences_in_order() -> None:
    text = (
        "Ducks live near ponds. Ducks eat plants and insects near ponds. "
        "The weather was sunny. Many ducks migrate south from ponds in winter."
    )
    for algorithm in ("textrank", "luhn"):
        config = {"summary_sentences": 2, "algorithm": algorithm}
        summary = str(build("SummaryExtractor", config).extract(Chunk(text))["summary"])
        assert "weather" not in summary and summary.count(".") == 2
        first, second = (text.index(s.strip() + ".") for s in summary.split(".")[:2])
        assert first < second  # in the text's order


def test_entities_by_pattern_only_and_bad_configs() -> None:
    found = build("EntityExtractor", {"entity_types": ["PERSON", "MONEY"]}).extract(Chunk(TEXT))
    assert found == {"entities_money": "$4.5 million"}
    with pytest.raises(ConfigInvalid, match="unknown predefined pattern 'iban'"):
        build("PatternExtractor", {"predefined_patterns": ["iban"]})
    with pytest.raises(ConfigInvalid, match="algorithm 'bert'"):
        build("KeywordExtractor", {"algorithm": "bert"})
    assert {"StatisticsExtractor", "TableExtractor", "PathExtractor"} <= set(EXTRACTORS)


def test_the_universal_extractor_adds_llamafarms_metadata_to_each_chunk() -> None:
    chunks = [
        Chunk("Intro.\n\n| 1 | 2 |\n|---|---|\n| 3 | 4 |", {"chunk_index": 0}),
        Chunk(
            "Machine learning needs good data. Mail ops@acme.example about it. "
            "Budgets grow every year. Nobody reads the fourth sentence.",
            {"chunk_index": 1},
        ),
        Chunk("Der Hafenmeister prüfte die Fischerboote vor dem Sturm.", {"chunk_index": 2}),
    ]
    rules = DataProcessingStrategy.model_validate(
        {
            "name": "s",
            "parsers": [{"type": "auto"}],
            "extractors": [{"type": "UniversalExtractor", "config": {"keyword_count": 3}}],
        }
    )
    apply_extractors(rules, "a.md", chunks)
    first, middle, last = (c.metadata for c in chunks)
    assert [m["chunk_position"] for m in (first, middle, last)] == ["start", "middle", "end"]
    assert middle["chunk_label"] == "2/3" and middle["sentence_count"] == 4
    assert middle["word_count"] == 18 and middle["character_count"] == len(chunks[1].text)
    assert first["has_tables"] is True and middle["has_tables"] is False
    assert middle["entities_email"] == "ops@acme.example"
    assert str(middle["summary"]).endswith("Budgets grow every year.")
    assert len(str(middle["keywords"]).split(", ")) == 3
    assert (middle["language"], last["language"]) == ("en", "de")
    assert "language" not in first  # one word and numbers say nothing of a language


def test_the_universal_extractors_switches_turn_parts_off() -> None:
    code = Chunk("def main():\n    return 1\n\nThe function returns one.")
    config = {"extract_entities": False, "generate_summary": False, "detect_language": False}
    found = build("UniversalExtractor", config).extract(code)
    assert found["has_code"] is True and "chunk_position" not in found  # no file seen
    assert not {"summary", "language"} & set(found)
    assert not [k for k in found if k.startswith("entities_")]
    assert build("UniversalExtractor", {"enabled": False}).extract(code) == {}
    assert (
        build("UniversalExtractor", {}).extract(Chunk("Plain words only here."))["has_code"]
        is False
    )
    with pytest.raises(ConfigInvalid, match="keyword_count"):
        build("UniversalExtractor", {"keyword_count": 0})


def test_table_extractor_reads_rows_that_name_their_columns() -> None:
    """What the XLSX, CSV, HTML and DOCX parsers write (ingest/parsers/tables.py)."""
    text = (
        "Quarterly sales by region.\n"
        "Key figures 2023 — Region: North; Sales: 3,190\n"
        "Key figures 2023 — Region: South; Sales: 2,040; Note: estimate\n"
        "Time: of day, not a table."
    )
    found = build("TableExtractor", {"output_format": "csv"}).extract(Chunk(text))
    assert found == {
        "table_count": 1,
        "table_rows": 3,
        "tables": 'Region,Sales,Note\nNorth,"3,190",\nSouth,"2,040",estimate',
    }
