"""Bodies of the chat sessions and project models routes (completions speak OpenAI's shapes)."""

from __future__ import annotations

from llamafarm.api.schemas.base import Public
from llamafarm.config.models import Provider, Runtime


class HistoryMessage(Public):
    role: str
    content: str


class ChatHistory(Public):
    messages: list[HistoryMessage]


class SessionPublic(Public):
    session_id: str
    title: str | None
    """The start of its first user message; null before its first turn."""
    messages: int
    created_at: float
    last_used_at: float


class SessionList(Public):
    total: int
    sessions: list[SessionPublic]


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

    @classmethod
    def of(cls, runtime: Runtime) -> ChatModelList:
        default = runtime.default().name
        models = [
            ChatModelPublic(
                name=m.name,
                provider=m.provider,
                model=m.model,
                base_url=m.base_url,
                default=m.name == default,
                description=m.description,
            )
            for m in runtime.model_list()
        ]
        return cls(total=len(models), models=models)
