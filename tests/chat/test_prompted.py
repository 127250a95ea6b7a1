"""Prompt-based tool calling (`tool_call_strategy: prompt_based`): the calls read from a
model's text, the part of a stream that may go out, the history as text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

from llamafarm.chat.providers.base import Completion, Delta, Generation, Message, ToolCall
from llamafarm.chat.providers.prompted import PromptedTools, as_text, read_calls, shown_up_to

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def test_calls_are_read_from_the_text_and_a_broken_one_stays_text() -> None:
    text, calls = read_calls(
        'Sure. <tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
        '<tool_call>{"name": "add", "arguments": "{\\"a\\": 2}"}'  # unclosed at the end
    )
    assert text.strip() == "Sure."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 1}),
        ("add", {"a": 2}),
    ]
    assert calls[0].id != calls[1].id
    broken = "<tool_call>{not json}</tool_call> and <tool_call>[1]</tool_call>"
    assert read_calls(broken) == (broken, ())


def test_a_stream_holds_back_what_may_begin_a_call() -> None:
    assert shown_up_to("Hello <tool_") == len("Hello ")
    assert shown_up_to("Hello <tool_call>{") == len("Hello ")
    assert shown_up_to("a < b") == len("a < b")
    assert shown_up_to("") == 0


def test_the_history_of_calls_goes_to_the_model_as_text() -> None:
    call = ToolCall(id="c1", name="add", arguments='{"a": 1}')
    plain = as_text(
        [
            Message("user", "1 + 1?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "2", tool_call_id="c1"),
        ]
    )
    assert [m.role for m in plain] == ["user", "assistant", "user"]
    assert read_calls(plain[1].content)[1][0].name == "add"
    assert plain[2].content == "Result of tool call c1:\n2"
    assert all(not m.tool_calls and m.tool_call_id is None for m in plain)


class Scripted:
    """A provider that says `text` in pieces of `size` characters."""

    def __init__(self, text: str, size: int = 3) -> None:
        self.text, self.size = text, size
        self.seen: list[Generation] = []

    name = "scripted"
    supports_tools = False

    def check(self) -> None: ...

    def complete(self, generation: Generation) -> Completion:
        self.seen.append(generation)
        return Completion(content=self.text, finish_reason="stop")

    async def stream(self, generation: Generation) -> AsyncGenerator[Delta, None]:
        self.seen.append(generation)
        for start in range(0, len(self.text), self.size):
            yield Delta(content=self.text[start : start + self.size])
        yield Delta(finish_reason="stop")


def test_the_wrapper_offers_tools_in_the_system_message_and_streams_around_the_call() -> None:
    inner = Scripted('One moment <tool_call>{"name": "add", "arguments": {}}</tool_call>')
    provider = PromptedTools(inner)
    question = Generation(
        messages=[Message("system", "Be brief."), Message("user", "1 + 1?")],
        tools=[TOOL],
        tool_choice="required",
    )
    whole = provider.complete(question)
    assert whole.finish_reason == "tool_calls" and whole.content == "One moment"
    sent = inner.seen[-1]
    assert sent.tools == () and sent.tool_choice is None and len(sent.messages) == 2
    assert sent.messages[0].content.startswith("Be brief.") and '"add"' in sent.messages[0].content

    async def drain() -> list[Delta]:
        return [d async for d in provider.stream(question)]

    deltas = asyncio.run(drain())
    assert "".join(d.content for d in deltas).strip() == "One moment"
    assert deltas[-1].finish_reason == "tool_calls" and deltas[-1].tool_calls[0].name == "add"

    last_round = provider.complete(
        Generation(messages=question.messages, tools=[TOOL], tool_choice="none")
    )
    assert "<tool_call>" not in inner.seen[-1].messages[0].content
    assert last_round.finish_reason == "tool_calls"  # the rounds drop calls made anyway
