"""OpenAI's chat wire format, shared by the providers that speak it (servers and llama.cpp):
messages out, finish reasons and tool calls in, whole or streamed in pieces."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from llamafarm.chat.providers.base import FinishReason, Message, ToolCall


def message_json(message: Message) -> dict[str, Any]:
    """A message as OpenAI's request has it (an assistant's tool calls with `content: null`
    when it said nothing)."""
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["content"] = message.content or None
        body["tool_calls"] = [tool_call_json(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        body["tool_call_id"] = message.tool_call_id
    return body


def tool_call_json(call: ToolCall, *, index: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"index": index} if index is not None else {}
    body.update(
        id=call.id, type="function", function={"name": call.name, "arguments": call.arguments}
    )
    return body


def finish(value: object, *, tool_calls: bool = False) -> FinishReason:
    """A server's finish reason as ours: `tool_calls` when the answer carries tool calls,
    whatever the server said (some say `stop`), and never when it carries none."""
    if tool_calls:
        return "tool_calls"
    return "length" if value == "length" else "stop"


def tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The `tool_calls` of a whole answer's message; ValueError when they are not the shape."""
    raw = message.get("tool_calls")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"tool_calls is not a list: {raw!r:.200}")
    calls = []
    for entry in raw:
        function = entry.get("function") if isinstance(entry, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"a tool call without a function name: {entry!r:.200}")
        assert isinstance(entry, dict) and isinstance(function, dict)
        calls.append(ToolCall(id=_id(entry.get("id")), name=name, arguments=_arguments(function)))
    return tuple(calls)


@dataclass
class ToolCallPieces:
    """Tool calls of a streamed answer, put together from the pieces each delta carries: the
    first piece of a call has its `index`, `id` and name, later ones more of its arguments."""

    _calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def feed(self, pieces: object) -> None:
        if not isinstance(pieces, list):
            return
        for position, piece in enumerate(pieces):
            if not isinstance(piece, dict):
                continue
            index = piece.get("index")
            key = index if isinstance(index, int) else position
            call = self._calls.setdefault(key, {"id": "", "name": "", "arguments": ""})
            if isinstance(piece.get("id"), str) and piece["id"]:
                call["id"] = piece["id"]
            function = piece.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    call["name"] += function["name"]
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call["arguments"] += arguments
                elif arguments is not None:
                    call["arguments"] += json.dumps(arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=_id(call["id"]), name=call["name"], arguments=call["arguments"] or "{}")
            for _, call in sorted(self._calls.items())
            if call["name"]
        )


def _id(value: object) -> str:
    """The call's id; servers that send none (some Ollama versions) get one made up."""
    return value if isinstance(value, str) and value else f"call_{secrets.token_hex(12)}"


def _arguments(function: dict[str, Any]) -> str:
    arguments = function.get("arguments")
    if arguments is None:
        return "{}"
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
