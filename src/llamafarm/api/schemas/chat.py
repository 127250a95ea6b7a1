"""Bodies of the chat sessions and project models routes (completions speak OpenAI's shapes)."""

from __future__ import annotations

from llamafarm.api.schemas.base import Public
from llamafarm.config.models import Provider


class HistoryMessage(Public):
    role: str
    content: str


class ChatHistory(Public):
    messages: list[HistoryMessage]


class SessionDeleted(Public):
    message: str


class SessionsDeleted(Public):
    message: str
    count: int


class ChatModelPublic(Public):
    name: str
    provider: Provider
    model: str
    base_url: str | None
    default: bool
    description: str | None


class ChatModelList(Public):
    total: int
    models: list[ChatModelPublic]
