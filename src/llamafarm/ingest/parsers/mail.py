"""What .eml and .msg share: headers as metadata and a header section, attachments as documents.

An attachment is parsed by the parser of its own format (a PDF by `PDFParser`, a sheet by
`ExcelParser`, a forwarded .eml by `EmlParser`...) and its sections join the message's, each
carrying `attachment` (its file name) and the message's headers in its metadata, so a search
hit says which attachment of which e-mail it came from. A file is one task item and one stored
document id; the attachment is told apart by its metadata, not by a document of its own in the
dataset (that would need the pipeline to store several documents per uploaded file).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from llamafarm.documents import MetadataValue, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.auto import AutoParser
from llamafarm.ingest.parsers.base import clean_inline

MAX_ATTACHMENTS = 50
"""Attachments parsed per message; the rest are named in the metadata only."""
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024
HEADER_FIELDS = ("from", "to", "cc", "date", "subject")

logger = logging.getLogger(__name__)


@dataclass
class Attachments:
    """The sections read from a message's attachments and the names of all of them."""

    sections: list[Section] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    """Attachments not parsed: no parser for their format, too big, too many, or unreadable."""
    config: dict[str, Any] = field(default_factory=dict)
    """Handed to each attachment's parser (`encoding` for text attachments)."""

    def add(self, name: str, data: bytes | None, headers: dict[str, MetadataValue]) -> None:
        name = _safe_name(name)
        self.names.append(name)
        if data is None or len(self.names) > MAX_ATTACHMENTS or len(data) > MAX_ATTACHMENT_BYTES:
            self.unread.append(name)
            return
        parser = AutoParser.formats.get(PurePosixPath(name.lower()).suffix)
        if parser is None:
            self.unread.append(name)
            return
        with tempfile.TemporaryDirectory(prefix="lf-attachment-") as folder:
            path = Path(folder) / f"attachment{PurePosixPath(name).suffix.lower()}"
            path.write_bytes(data)
            try:
                document = parser(self.config).parse(path, filename=name)
            except ParseFailed as exc:
                logger.info("attachment %s not parsed: %s", name, exc.detail)
                self.unread.append(name)
                return
        where: dict[str, MetadataValue] = {**headers, "attachment": name}
        if document.metadata.get("format"):
            where["attachment_format"] = document.metadata["format"]
        for section in document.sections:
            heading = f"{name}: {section.heading}" if section.heading else name
            # The attachment's own facts win: a forwarded message keeps its sender and subject.
            self.sections.append(
                replace(section, heading=heading, metadata={**where, **section.metadata})
            )

    def metadata(self) -> dict[str, MetadataValue]:
        found: dict[str, MetadataValue] = {}
        if self.names:
            found["attachments"] = ", ".join(self.names)
        if self.unread:
            found["attachments_unread"] = ", ".join(self.unread)
        return found


def header_metadata(fields: dict[str, object]) -> dict[str, MetadataValue]:
    """`from`, `to`, `cc`, `date` (ISO 8601 where it parses) and `subject`, those that are set."""
    found: dict[str, MetadataValue] = {}
    for key in HEADER_FIELDS:
        value = fields.get(key)
        if value is None:
            continue
        text = value.isoformat() if hasattr(value, "isoformat") else clean_inline(str(value))
        if text:
            found[key] = text
    return found


def header_section(headers: dict[str, MetadataValue]) -> Section:
    """`From: ...` lines, so a question about who wrote or when finds the message."""
    lines = [f"{key.capitalize()}: {headers[key]}" for key in HEADER_FIELDS if key in headers]
    return Section("\n".join(lines), heading="Headers", metadata=dict(headers))


def _safe_name(name: str) -> str:
    """The attachment's own name without folders; `attachment` when it has none."""
    return PurePosixPath(clean_inline(name).replace("\\", "/")).name or "attachment"
