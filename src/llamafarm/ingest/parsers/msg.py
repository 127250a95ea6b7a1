"""Outlook .msg e-mails with extract-msg: a header section, the body, and text attachments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import extract_msg
from extract_msg.exceptions import ExMsgBaseException

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_inline, clean_text, decode_text_file, finish

_TEXT_ATTACHMENTS = (".txt", ".md", ".markdown", ".csv", ".log", ".json", ".text")
"""Attachments whose content is read as text; others are named in the metadata only."""
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


class MsgParser:
    extensions: ClassVar[tuple[str, ...]] = (".msg",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.headers = bool(config.get("extract_headers", True))
        self.attachments = bool(config.get("extract_attachments", True))
        self.attachment_text = bool(config.get("include_attachment_content", True))
        self.encoding: str | None = config.get("encoding") or None

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        # extract-msg logs every unusual property it meets at WARNING; the text is what matters.
        logging.getLogger("extract_msg").setLevel(logging.ERROR)
        try:
            message = extract_msg.openMsg(str(path), strict=False)
        except (ExMsgBaseException, OSError, ValueError) as exc:
            raise ParseFailed(f"'{filename}' is not a readable Outlook .msg file: {exc}") from exc
        try:
            return self._document(message, filename)
        finally:
            message.close()

    def _document(self, message: Any, filename: str) -> ParsedDocument:
        subject = clean_inline(str(getattr(message, "subject", None) or ""))
        fields = {
            "From": getattr(message, "sender", None),
            "To": getattr(message, "to", None),
            "Cc": getattr(message, "cc", None),
            "Date": getattr(message, "date", None),
            "Subject": subject,
        }
        sections: list[Section] = []
        if self.headers:
            lines = [f"{k}: {clean_inline(str(v))}" for k, v in fields.items() if v]
            if lines:
                sections.append(Section("\n".join(lines), heading="Headers"))
        sections.append(
            Section(clean_text(str(getattr(message, "body", None) or "")), None, subject or None)
        )
        names: list[str] = []
        for attachment in getattr(message, "attachments", []) if self.attachments else []:
            name = str(
                getattr(attachment, "longFilename", None)
                or getattr(attachment, "shortFilename", None)
                or ""
            )
            names.append(name)
            if text := self._attachment_text(attachment, name):
                sections.append(Section(text, heading=f"Attachment: {name}"))
        metadata: dict[str, MetadataValue] = {"format": "msg", "title": subject}
        if fields["From"]:
            metadata["sender"] = clean_inline(str(fields["From"]))
        if fields["Date"]:
            metadata["date"] = str(fields["Date"])
        if names:
            metadata["attachments"] = ", ".join(n for n in names if n)
        return finish(sections, filename, metadata)

    def _attachment_text(self, attachment: Any, name: str) -> str:
        data = getattr(attachment, "data", None)
        if not (self.attachment_text and isinstance(data, bytes)):
            return ""
        if not name.lower().endswith(_TEXT_ATTACHMENTS) or len(data) > MAX_ATTACHMENT_BYTES:
            return ""
        try:
            return clean_text(decode_text_file(data, name, encoding=self.encoding))
        except ParseFailed:
            return ""
