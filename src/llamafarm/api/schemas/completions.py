"""Bodies of the chat completions route: OpenAI's `chat.completion` and, streamed, its
`chat.completion.chunk` events, with the fields LlamaFarm adds (`sources`, `thinking`).

`chat/responses.py` builds these shapes; the models here document them and check a whole
answer on its way out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llamafarm.api.schemas.base import Public, sse_event
from llamafarm.documents import MetadataValue

FinishReason = Literal["stop", "length", "tool_calls"]


def _absent(value: object) -> bool:
    return value is None


class FunctionCall(Public):
    name: str
    arguments: str
    """The arguments as a JSON text, as the model wrote them."""


class ToolCallPublic(Public):
    id: str
    type: Literal["function"]
    function: FunctionCall


class StreamedToolCall(ToolCallPublic):
    index: int
    """The call's place among the answer's calls (first in a chunk's call)."""


class Usage(Public):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Source(Public):
    """A retrieved chunk the answer was given as context."""

    content: str
    """The chunk's text, spaces collapsed, cut to a preview."""
    source: MetadataValue | None
    page: MetadataValue | None
    score: float
    chunk_id: str
    document_id: MetadataValue | None


class Thinking(Public):
    """What a model that thinks wrote between `<think>` tags, apart from its answer."""

    content: str
    tokens: int | None


class AssistantMessage(Public):
    role: Literal["assistant"]
    content: str | None
    """The answer; null when the message only carries tool calls."""
    tool_calls: list[ToolCallPublic] | None = Field(default=None, exclude_if=_absent)
    """Calls of the client's own tools, for the client to run (absent when none)."""


class Choice(Public):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(Public):
    """A whole answer (`stream` false)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    """Seconds since the epoch."""
    model: str
    choices: list[Choice]
    usage: Usage | None
    """Null when the provider did not count tokens."""
    sources: list[Source]
    thinking: Thinking | None = Field(default=None, exclude_if=_absent)
    """Only for a model configured to think."""


class Delta(Public):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=_absent)
    """In the first chunk only."""
    content: str | None = Field(default=None, exclude_if=_absent)
    tool_calls: list[StreamedToolCall] | None = Field(default=None, exclude_if=_absent)


class ChunkChoice(Public):
    index: int
    delta: Delta
    finish_reason: FinishReason | None
    """Set in the last chunk only."""


class ChatCompletionChunk(Public):
    """One event of a streamed answer (`stream` true); every chunk has the same `id`."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    sources: list[Source] | None = Field(default=None, exclude_if=_absent)
    """In the first chunk only."""
    usage: Usage | None = Field(default=None, exclude_if=_absent)
    """In the last chunk, when the provider counted tokens."""
    thinking: Thinking | None = Field(default=None, exclude_if=_absent)
    """In the last chunk, for a model configured to think."""


class StreamErrorBody(Public):
    message: str
    type: str
    code: int


class StreamError(Public):
    """The last event of a stream whose provider failed after the answer began."""

    error: StreamErrorBody


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` put in place of their `$ref`s: an event's content schema
    stands alone, outside the OpenAPI components (the models here do not nest themselves)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


STREAM_EVENT = sse_event(
    {
        "anyOf": [
            _inlined(ChatCompletionChunk.model_json_schema()),
            _inlined(StreamError.model_json_schema()),
        ]
    },
    done=True,
)
"""A streamed answer's events: chunks, then `[DONE]` (or an error event, then `[DONE]`)."""
