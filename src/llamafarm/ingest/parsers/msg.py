"""Outlook .msg e-mails with extract-msg: headers, the body, attachments parsed by their format."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import clean_text, finish
from llamafarm.ingest.parsers.mail import Attachments, header_metadata, header_section


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
        # Imported here, not with the module (17 MiB): see `pdf.PDFParser._inspect`.
        import extract_msg
        from extract_msg.exceptions import ExMsgBaseException

        try:
            message = extract_msg.openMsg(str(path), strict=False)
        except (ExMsgBaseException, OSError, ValueError) as exc:
            raise ParseFailed(f"'{filename}' is not a readable Outlook .msg file: {exc}") from exc
        try:
            return self._document(message, filename)
        finally:
            message.close()

    def _document(self, message: Any, filename: str) -> ParsedDocument:
        headers = header_metadata(
            {
                "from": getattr(message, "sender", None),
                "to": getattr(message, "to", None),
                "cc": getattr(message, "cc", None),
                "date": getattr(message, "date", None),
                "subject": getattr(message, "subject", None),
            }
        )
        sections = [header_section(headers)] if self.headers and headers else []
        body = clean_text(str(getattr(message, "body", None) or ""))
        sections.append(Section(body, None, str(headers.get("subject", "")) or None, headers))
        attachments = Attachments(config={"encoding": self.encoding} if self.encoding else {})
        for attachment in getattr(message, "attachments", []) if self.attachments else []:
            name = str(
                getattr(attachment, "longFilename", None)
                or getattr(attachment, "shortFilename", None)
                or ""
            )
            data = getattr(attachment, "data", None)
            readable = self.attachment_text and isinstance(data, bytes)
            attachments.add(name, data if readable else None, headers)
        sections += attachments.sections
        metadata: dict[str, MetadataValue] = {
            "format": "msg",
            "title": headers.get("subject", ""),
            **headers,
            **attachments.metadata(),
        }
        return finish(sections, filename, metadata)
