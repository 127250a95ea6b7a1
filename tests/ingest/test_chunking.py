"""Chunking strategies: sizes, overlap, section boundaries, metadata and config errors."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from llamafarm.documents import ParsedDocument, Section
from llamafarm.errors import ConfigInvalid
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.parsers.epub import EPUBParser

SENTENCES = [f"Sentence number {i} says something about topic {i % 7}." for i in range(40)]
PROSE = " ".join(SENTENCES)


def doc(*sections: Section) -> ParsedDocument:
    return ParsedDocument(list(sections))


def words(text: str) -> list[str]:
    return text.split()


def test_characters_windows_break_at_whitespace() -> None:
    chunks = chunk_document(
        doc(Section(PROSE)), chunk_size=100, chunk_overlap=0, chunk_strategy="characters"
    )
    assert len(chunks) > 10
    assert all(len(c.text) <= 100 for c in chunks)
    # Windows are filled: no chunk could have taken the next word too.
    for chunk, following in pairwise(chunks):
        assert len(chunk.text) + 1 + len(following.text.split()[0]) > 100
    # Cut only between words, so every word survives whole and in order.
    assert [w for c in chunks for w in words(c.text)] == words(PROSE)


def test_characters_hard_cut_for_a_word_longer_than_the_chunk() -> None:
    chunks = chunk_document(
        doc(Section("x" * 250)), chunk_size=100, chunk_overlap=10, chunk_strategy="characters"
    )
    assert [len(c.text) for c in chunks] == [100, 100, 50]


def test_sentences_are_packed_whole() -> None:
    chunks = chunk_document(
        doc(Section(PROSE)), chunk_size=200, chunk_overlap=0, chunk_strategy="sentences"
    )
    assert all(len(c.text) <= 200 for c in chunks)
    for chunk in chunks:
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith(".")
        assert len(chunk.text) > 100  # several sentences per chunk, not one each
    assert " ".join(c.text for c in chunks) == PROSE


def test_paragraphs_are_packed_and_a_long_one_split_by_sentences() -> None:
    short = ["First short paragraph.", "Second short paragraph.", "Third short paragraph."]
    text = "\n\n".join([*short, PROSE, "Closing paragraph."])
    chunks = chunk_document(
        doc(Section(text)), chunk_size=300, chunk_overlap=0, chunk_strategy="paragraphs"
    )
    assert chunks[0].text == "\n\n".join(short)
    assert all(len(c.text) <= 300 for c in chunks)
    middle = [c.text for c in chunks[1:]]
    # The long paragraph breaks only at sentence ends.
    assert all(re.search(r"\.$", t) for t in middle)
    assert chunks[-1].text.endswith("Closing paragraph.")


def test_sections_one_chunk_each_unless_too_long() -> None:
    document = doc(
        Section("Short section one.", heading="One"),
        Section("Short section two.", heading="Two"),
        Section("\n\n".join(SENTENCES[:20]), heading="Long"),
    )
    chunks = chunk_document(document, chunk_size=400, chunk_overlap=0, chunk_strategy="sections")
    assert [c.text for c in chunks[:2]] == ["Short section one.", "Short section two."]
    long_chunks = [c for c in chunks if c.metadata["heading"] == "Long"]
    assert len(long_chunks) > 1
    assert all(len(c.text) <= 400 for c in long_chunks)
    assert "\n\n".join(c.text for c in long_chunks) == document.sections[2].text


@pytest.mark.parametrize("strategy", ["characters", "sentences", "paragraphs", "sections"])
def test_overlap_repeats_the_tail_of_the_previous_chunk(strategy: str) -> None:
    chunks = chunk_document(
        doc(Section(PROSE)), chunk_size=200, chunk_overlap=50, chunk_strategy=strategy
    )
    assert len(chunks) > 3
    for previous, chunk in pairwise(chunks):
        assert len(chunk.text) <= 200
        # The new chunk opens with a whole-word tail of the previous one, about 50 chars long.
        shared = max(
            n for n in range(len(chunk.text) + 1) if previous.text.endswith(chunk.text[:n])
        )
        assert 25 <= shared <= 50
        assert chunk.text[:shared].split()[0] in words(previous.text)
        assert previous.text[-shared - 1] == " "


def test_no_overlap_means_no_repeated_text() -> None:
    chunks = chunk_document(
        doc(Section(PROSE)), chunk_size=200, chunk_overlap=0, chunk_strategy="characters"
    )
    assert sum(len(words(c.text)) for c in chunks) == len(words(PROSE))


def test_chunks_never_cross_sections_and_carry_page_and_heading() -> None:
    document = doc(
        Section("alpha " * 60, page=1, heading="Intro"),
        Section("beta " * 60, page=2),
        Section("gamma " * 10),
    )
    chunks = chunk_document(document, chunk_size=100, chunk_overlap=20, chunk_strategy="paragraphs")
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        kinds = set(words(chunk.text))
        assert len(kinds) == 1  # overlap stays inside its own section too
        kind = kinds.pop()
        expected = {"alpha": {"page": 1, "heading": "Intro"}, "beta": {"page": 2}, "gamma": {}}
        assert {k: v for k, v in chunk.metadata.items() if k != "chunk_index"} == expected[kind]


@pytest.mark.parametrize("strategy", ["characters", "sentences", "paragraphs", "sections"])
def test_empty_and_whitespace_sections_give_no_chunks(strategy: str) -> None:
    document = doc(Section("   \n\n  "), Section(""), Section("Only text.", page=3))
    chunks = chunk_document(document, chunk_size=100, chunk_overlap=5, chunk_strategy=strategy)
    assert [(c.text, c.metadata) for c in chunks] == [
        ("Only text.", {"chunk_index": 0, "page": 3}),
    ]


def test_real_book_chunks_stay_within_size() -> None:
    fixture = Path(__file__).parent.parent / "fixtures" / "winter-sports.epub"
    book = EPUBParser().parse(fixture, filename="winter-sports.epub")
    chunks = chunk_document(book, chunk_size=1000, chunk_overlap=100)
    assert all(0 < len(c.text) <= 1000 for c in chunks)
    assert 340 < len(chunks) < 600
    assert {c.metadata["heading"] for c in chunks} >= {"CHAPTER VI SKI-ING"}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"chunk_size": 0}, "chunk_size must be a whole number of at least 100"),
        (
            {"chunk_size": 1, "chunk_overlap": 0},
            "chunk_size must be a whole number of at least 100",
        ),
        ({"chunk_size": 99}, "chunk_size must be a whole number of at least 100, got 99"),
        ({"chunk_size": "1000"}, "chunk_size must be a whole number of at least 100, got '1000'"),
        ({"chunk_size": True}, "chunk_size"),
        (
            {"chunk_overlap": -1},
            "chunk_overlap must be a whole number from 0 to half of chunk_size",
        ),
        ({"chunk_size": 100, "chunk_overlap": 51}, r"half of chunk_size \(50\), got 51"),
        ({"chunk_size": 1000, "chunk_overlap": 999}, r"half of chunk_size \(500\), got 999"),
        ({"chunk_strategy": "words"}, "chunk_strategy 'words' is unknown"),
    ],
)
def test_invalid_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        chunk_document(doc(Section("text")), **options)  # type: ignore[arg-type]
