"""E-mail (.eml, RFC 5322/MIME) with the stdlib `email` package: headers, body, attachments."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

from llamafarm.documents import MetadataValue, ParsedDocument, Section
from llamafarm.errors import ParseFailed
from llamafarm.ingest.parsers.base import SectionBuilder, clean_text, finish, read_bytes
from llamafarm.ingest.parsers.html import add_html, content_root, make_soup
from llamafarm.ingest.parsers.mail import Attachments, header_metadata, header_section


class EmlParser:
    extensions: ClassVar[tuple[str, ...]] = (".eml",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.headers = bool(config.get("extract_headers", True))
        self.attachments = bool(config.get("extract_attachments", True))
        self.attachment_text = bool(config.get("include_attachment_content", True))

    def parse(self, path: Path, *, filename: str) -> ParsedDocument:
        data = read_bytes(path, filename)
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # what policy.default builds
        try:
            headers = header_metadata(
                {
                    "from": message["from"],
                    "to": message["to"],
                    "cc": message["cc"],
                    "date": _date(message),
                    "subject": message["subject"],
                }
            )
        except (ValueError, TypeError, IndexError) as exc:  # headers the parser could not fold
            raise ParseFailed(
                f"'{filename}' has e-mail headers that cannot be read: {exc}"
            ) from exc
        if not headers:
            raise ParseFailed(f"'{filename}' is not an e-mail: it has no From/To/Date/Subject")
        sections = [header_section(headers)] if self.headers else []
        body = _body(message, filename)
        subject = str(headers.get("subject", "")) or None
        sections += [
            Section(s.text, s.page, s.heading or subject, {**headers, **s.metadata}) for s in body
        ]
        attachments = Attachments()
        for part in message.iter_attachments() if self.attachments else ():
            name, content = _attachment(part)
            attachments.add(name, content if self.attachment_text else None, headers)
        sections += attachments.sections
        metadata: dict[str, MetadataValue] = {
            "format": "eml",
            "title": headers.get("subject", ""),
            **headers,
            **attachments.metadata(),
        }
        return finish(sections, filename, metadata)


def _date(message: EmailMessage) -> object:
    header = message["date"]
    return getattr(header, "datetime", None) or header


def _body(message: EmailMessage, filename: str) -> list[Section]:
    """The plain-text body, or the HTML one read as a page when there is no plain one."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return []
    try:
        content = part.get_content()
    except (LookupError, ValueError) as exc:  # an unknown charset, a broken transfer encoding
        raise ParseFailed(f"'{filename}' has a body that cannot be decoded: {exc}") from exc
    if part.get_content_subtype() == "html":
        builder = SectionBuilder()
        add_html(content_root(make_soup(str(content).encode(), filename)), builder, filename)
        return builder.build()
    return [Section(clean_text(str(content)))]


def _attachment(part: EmailMessage) -> tuple[str, bytes | None]:
    """The attachment's file name and bytes; a forwarded message as .eml bytes."""
    name = part.get_filename() or ""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        if not isinstance(inner, EmailMessage):
            return name or "message.eml", None
        return name or f"{inner.get('subject') or 'message'}.eml", bytes(inner)
    payload = part.get_payload(decode=True)
    return name, payload if isinstance(payload, bytes) else None
