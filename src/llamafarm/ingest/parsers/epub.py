"""EPUB with zipfile and BeautifulSoup: chapters in spine order, headings start sections."""

from __future__ import annotations

import posixpath
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote
from xml.etree import ElementTree

from bs4.element import Tag

from llamafarm.documents import MetadataValue, ParsedDocument
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import (
    MAX_FILE_BYTES,
    SectionBuilder,
    check_package,
    clean_inline,
    finish,
)
from llamafarm.ingest.parsers.html import HEADINGS, add_html, make_soup

_CONTAINER = "META-INF/container.xml"
_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_CHAPTER_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")


class EPUBParser:
    extensions: ClassVar[tuple[str, ...]] = (".epub",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        check_package(path, filename, "EPUB")
        metadata: dict[str, MetadataValue] = {"format": "epub"}
        # One builder for the whole book: a chapter split over several spine files keeps its
        # heading until the next one.
        builder = SectionBuilder()
        try:
            with zipfile.ZipFile(path) as book:
                opf_path = _rootfile(book)
                package = ElementTree.fromstring(_read(book, opf_path))
                metadata["title"] = _text(package.find("opf:metadata/dc:title", _NS))
                metadata["author"] = _text(package.find("opf:metadata/dc:creator", _NS))
                chapters = _spine(package, posixpath.dirname(opf_path))
                roots = [
                    soup.body or soup
                    for soup in (make_soup(_read(book, name), filename) for name in chapters)
                ]
                depth = _chapter_level(roots)
                for root in roots:
                    add_html(root, builder, filename, depth=depth)
        except ParseFailed:
            raise
        except (KeyError, ElementTree.ParseError, zipfile.BadZipFile, OSError) as exc:
            raise ParseFailed(f"'{filename}' is not a readable EPUB: {exc}") from exc
        metadata["chapters"] = len(chapters)
        return finish(builder.build(), filename, metadata)


def _rootfile(book: zipfile.ZipFile) -> str:
    container = ElementTree.fromstring(_read(book, _CONTAINER))
    rootfile = container.find("c:rootfiles/c:rootfile", _NS)
    if rootfile is None or not rootfile.get("full-path"):
        raise KeyError("META-INF/container.xml names no package document")
    return str(rootfile.get("full-path"))


def _spine(package: ElementTree.Element, base: str) -> list[str]:
    """Archive names of the spine's (X)HTML documents, in reading order."""
    manifest = {
        item.get("id"): item
        for item in package.iterfind("opf:manifest/opf:item", _NS)
        if item.get("media-type") in _CHAPTER_TYPES and item.get("href")
    }
    names = []
    for ref in package.iterfind("opf:spine/opf:itemref", _NS):
        item = manifest.get(ref.get("idref"))
        if item is not None:
            href = unquote(str(item.get("href")).split("#", 1)[0])
            names.append(posixpath.normpath(posixpath.join(base, href)))
    return names


def _chapter_level(roots: list[Tag]) -> int:
    """The heading level chapters use: the highest one that occurs more than once.

    Deeper headings stay in the text, so each section is a whole chapter under its title.
    """
    counts = Counter(int(h.name[1]) for root in roots for h in root.find_all(list(HEADINGS)))
    repeated = [level for level, count in counts.items() if count > 1]
    return min(repeated or counts or [6])


def _read(book: zipfile.ZipFile, name: str) -> bytes:
    if book.getinfo(name).file_size > MAX_FILE_BYTES:
        raise KeyError(f"{name} is too large")
    return book.read(name)


def _text(element: ElementTree.Element | None) -> str:
    return clean_inline(element.text or "") if element is not None else ""
