"""OpenAI's shapes of a completion: the body of a whole one, the chunks of a streamed one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamafarm.chat.conversation import Conversation
from llamafarm.chat.prepare import Prepared
from llamafarm.chat.providers.base import Delta, FinishReason, ToolCall, Usage
from llamafarm.chat.providers.wire import tool_call_json
from llamafarm.chat.thinking import ThinkSplitter, split
from llamafarm.errors import LfError


@dataclass(frozen=True)
class Answer:
    """A whole completion: the OpenAI-shaped `body`, and the answer to keep in the session
    (None while the turn is not over: the client has `tool_calls` to run)."""

    body: dict[str, Any]
    kept: str | None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def choice(self) -> dict[str, Any]:
        choice: dict[str, Any] = self.body["choices"][0]
        return choice


def answer(prepared: Prepared, talk: Conversation) -> Answer:
    """The body of a completion whose rounds are over."""
    said, thought = split(talk.text)
    message: dict[str, Any] = {"role": "assistant", "content": said}
    if talk.client_calls:
        message["content"] = said or None
        message["tool_calls"] = [tool_call_json(call) for call in talk.client_calls]
    body: dict[str, Any] = {
        "id": prepared.id,
        "object": "chat.completion",
        "created": prepared.created,
        "model": prepared.model.model,
        "choices": [{"index": 0, "message": message, "finish_reason": talk.finish_reason}],
        "usage": usage_json(talk.usage),
        "sources": prepared.sources,
    }
    if prepared.think:
        body["thinking"] = {"content": thought, "tokens": None}
    kept = None if talk.client_calls else said
    return Answer(body=body, kept=kept, tool_calls=talk.client_calls)


class Stream:
    """A streamed completion's deltas in, OpenAI chunks out; `answer` is set by `end()`."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.answer: str | None = None
        self._splitter = ThinkSplitter(tentative=prepared.think)
        self._shown: list[str] = []
        self._first = True
        self.finish_reason: FinishReason = "stop"
        self.usage: Usage | None = None
        self.tool_calls: tuple[ToolCall, ...] = ()

    def feed(self, delta: Delta) -> list[dict[str, Any]]:
        chunks = []
        if self._first and self.prepared.sources_event is not None:
            # LlamaFarm's event (not OpenAI's): the chunks retrieved, before the answer
            chunks.append({"type": "sources", "sources": self.prepared.sources_event})
        text = self._splitter.feed(delta.content)
        if text or self._first:
            self._shown.append(text)
            chunks.append(
                self._chunk(
                    {"role": "assistant", "content": text} if self._first else {"content": text}
                )
            )
            self._first = False
        if delta.finish_reason is not None:
            self.finish_reason, self.usage = delta.finish_reason, delta.usage
            self.tool_calls = delta.tool_calls
        return chunks

    def end(self) -> list[dict[str, Any]]:
        chunks = []
        rest = self._splitter.finish()
        if rest:
            self._shown.append(rest)
            chunks.append(self._chunk({"content": rest}))
        if self.tool_calls:
            calls = [tool_call_json(c, index=i) for i, c in enumerate(self.tool_calls)]
            chunks.append(self._chunk({"tool_calls": calls}))
        last = self._chunk({}, finish_reason=self.finish_reason)
        if self.usage is not None:
            last["usage"] = usage_json(self.usage)
        if self.prepared.think:
            last["thinking"] = {"content": self._splitter.thought, "tokens": None}
        chunks.append(last)
        self.answer = "".join(self._shown).strip()
        return chunks

    @property
    def kept(self) -> str | None:
        """The answer to keep in the session; None while the client has tool calls to run."""
        return None if self.tool_calls else self.answer

    def _chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.prepared.id,
            "object": "chat.completion.chunk",
            "created": self.prepared.created,
            "model": self.prepared.model.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if "role" in delta:
            chunk["sources"] = self.prepared.sources
        return chunk


def error_chunk(error: LfError) -> dict[str, Any]:
    """What a stream sends when the provider fails after the response has begun."""
    return {"error": {"message": error.detail, "type": type(error).__name__, "code": error.status}}


def usage_json(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
