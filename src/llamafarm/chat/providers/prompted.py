"""Tools for a model without native tool calling (`tool_call_strategy: prompt_based`).

The tools are described in the system message, the model is asked to answer a call as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, and the calls are read back from its
text. Earlier calls and their results go back to it as text too (its chat template may have no
place for `tool_calls` or `tool` messages). It wraps any provider; the rounds of tool calls
(`chat/conversation.py`) see a provider that takes tools like any other.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from llamafarm.chat.providers.base import (
    Completion,
    Delta,
    FinishReason,
    Generation,
    Message,
    Provider,
    ToolCall,
    ToolChoice,
)

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


def instructions(tools: Sequence[Mapping[str, Any]], choice: ToolChoice | None) -> str:
    """The system message's part that offers the tools."""
    specs = "\n".join(json.dumps(tool.get("function", tool)) for tool in tools)
    must = ""
    if choice == "required":
        must = "\nCall one of the tools now."
    elif isinstance(choice, Mapping):
        must = f"\nCall the tool {choice.get('function', {}).get('name')!r} now."
    return (
        "You can call these tools (JSON schemas):\n"
        f"{specs}\n"
        f'To call one, answer with {OPEN}{{"name": "<tool name>", "arguments": {{...}}}}{CLOSE} '
        "and nothing after it; each result comes back in the next message. "
        f"Answer normally when no tool is needed.{must}"
    )


def as_text(messages: Sequence[Message]) -> list[Message]:
    """Earlier tool calls and their results as plain assistant and user text."""
    plain = []
    for message in messages:
        if message.tool_calls:
            calls = [
                f'{OPEN}{{"name": {json.dumps(c.name)}, "arguments": {c.arguments or "{}"}}}{CLOSE}'
                for c in message.tool_calls
            ]
            plain.append(Message("assistant", "\n".join([message.content, *calls]).strip()))
        elif message.role == "tool":
            plain.append(
                Message("user", f"Result of tool call {message.tool_call_id}:\n{message.content}")
            )
        else:
            plain.append(message)
    return plain


def read_calls(text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """The text without its tool-call blocks, and the calls they hold (a block that is not a
    call, such as broken JSON, stays in the text)."""
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        try:
            call = json.loads(match.group(1))
        except ValueError:
            return match.group(0)
        name = call.get("name") if isinstance(call, dict) else None
        if not isinstance(name, str) or not name:
            return match.group(0)
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(ToolCall(id=f"call_{secrets.token_hex(12)}", name=name, arguments=text))
        return ""

    return _CALL.sub(take, text), tuple(calls)


def shown_up_to(said: str) -> int:
    """How much of a streamed answer can go out: all of it but a tool call's beginning."""
    start = said.find(OPEN)
    if start >= 0:
        return start
    for size in range(min(len(OPEN) - 1, len(said)), 0, -1):
        if said.endswith(OPEN[:size]):
            return len(said) - size
    return len(said)


class PromptedTools:
    """A provider whose model is offered tools in its prompt, not in the request's `tools`."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def supports_tools(self) -> bool:
        return True

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def plain(self, generation: Generation) -> Generation:
        """The generation as the inner provider takes it: tools in the system message."""
        messages = as_text(generation.messages)
        if generation.tools and generation.tool_choice != "none":
            offer = instructions(generation.tools, generation.tool_choice)
            if messages and messages[0].role == "system":
                messages[0] = Message("system", f"{messages[0].content}\n\n{offer}")
            else:
                messages.insert(0, Message("system", offer))
        return replace(generation, messages=messages, tools=(), tool_choice=None)

    def complete(self, generation: Generation) -> Completion:
        result = self.inner.complete(self.plain(generation))
        if not generation.tools:
            return result
        text, calls = read_calls(result.content)
        finish: FinishReason = "tool_calls" if calls else result.finish_reason
        return replace(result, content=text.strip(), finish_reason=finish, tool_calls=calls)

    async def stream(self, generation: Generation) -> AsyncGenerator[Delta, None]:
        """Text as it comes until a tool call may begin; the calls in the last delta."""
        said, shown, last = "", 0, Delta(finish_reason="stop")
        async with aclosing(self.inner.stream(self.plain(generation))) as deltas:
            async for delta in deltas:
                said += delta.content
                if delta.finish_reason is not None:
                    last = delta
                end = shown_up_to(said) if generation.tools else len(said)
                if end > shown:
                    yield Delta(content=said[shown:end])
                    shown = end
        text, calls = read_calls(said) if generation.tools else (said, ())
        if text[shown:].strip():
            yield Delta(content=text[shown:].rstrip())
        finish: FinishReason = "tool_calls" if calls else last.finish_reason or "stop"
        yield Delta(finish_reason=finish, usage=last.usage, tool_calls=calls)
