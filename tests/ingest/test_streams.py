"""Big text, CSV and JSON Lines files read block by block give the text a whole parse gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers import streams
from llamafarm.ingest.parsers.csv import CSVParser
from llamafarm.ingest.parsers.docx import DocxParser
from llamafarm.ingest.parsers.json import JSONParser
from llamafarm.ingest.parsers.streams import stream_sections
from llamafarm.ingest.parsers.text import TextParser

STREAM_BYTES = 64 << 10
BLOCK_CHARS = 8 << 10
BIG = STREAM_BYTES + (16 << 10)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits scaled down 128 times, so the files here stay small."""
    monkeypatch.setattr(streams, "STREAM_BYTES", STREAM_BYTES)
    monkeypatch.setattr(streams, "BLOCK_CHARS", BLOCK_CHARS)


def test_a_big_text_file_streams_in_blocks_cut_at_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    paragraph = "Café crème on row {i}: the pickers' notes.\n\n"
    count = BIG // len(paragraph.format(i=0).encode()) + 1
    path.write_text("".join(paragraph.format(i=i) for i in range(count)), encoding="cp1252")
    sections = stream_sections(TextParser(), path, path.name)
    assert sections is not None
    texts = [section.text for section in sections]
    assert len(texts) > 1 and all(len(text) <= BLOCK_CHARS + 1000 for text in texts)
    # No paragraph is split between blocks, and none is lost; cp1252 was detected.
    joined = "\n\n".join(texts).split("\n\n")
    assert joined == [paragraph.format(i=i).strip() for i in range(count)]


def test_a_big_csv_streams_rows_named_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    rows = ["region,quarter,revenue"]
    for i in range(1, BIG // 12):
        rows.append(f"North,Q{i % 4 + 1},{i * 10}")
    path.write_text("\n".join(rows) + "\n")
    sections = stream_sections(CSVParser(), path, path.name)
    assert sections is not None
    lines = [line for section in sections for line in section.text.split("\n")]
    assert len(lines) == len(rows) - 1
    assert lines[0] == "region: North; quarter: Q2; revenue: 10"
    assert (
        lines[-1]
        == f"region: North; quarter: Q{(len(rows) - 1) % 4 + 1}; revenue: {(len(rows) - 1) * 10}"
    )


def test_big_json_lines_stream_one_section_per_record(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        count = 0
        while out.tell() < BIG:
            out.write(json.dumps({"id": count, "user": {"name": f"u{count}"}, "ok": True}) + "\n")
            count += 1
    sections = stream_sections(JSONParser(), path, path.name)
    assert sections is not None
    texts = [section.text for section in sections]
    assert len(texts) == count
    assert texts[7] == "id: 7\nuser.name: u7\nok: true"


def test_small_files_and_other_formats_are_parsed_whole(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("short")
    assert stream_sections(TextParser(), small, small.name) is None
    big = tmp_path / "big.docx"
    big.write_bytes(b"x" * BIG)
    assert stream_sections(DocxParser(), big, big.name) is None


def test_a_big_binary_file_named_txt_fails(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(bytes(range(256)) * (BIG // 256))
    sections = stream_sections(TextParser(), path, path.name)
    assert sections is not None
    with pytest.raises(ParseFailed, match="binary"):
        list(sections)
