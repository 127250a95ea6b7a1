"""Generating a prepared completion, in as many rounds as its tool calls take (see
`conversation`): whole (`complete`) or as deltas while the model makes them (`stream`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from llamafarm.chat.conversation import SEPARATOR, Conversation
from llamafarm.chat.prepare import Prepared
from llamafarm.chat.providers.base import Completion, Delta, Generation
from llamafarm.chat.tools import Toolbox
from llamafarm.events import Timeline


async def complete(
    prepared: Prepared,
    tools: Toolbox,
    *,
    generate: Callable[[Generation], Awaitable[Completion]],
    timeline: Timeline,
) -> Conversation:
    """The completion, in as many rounds as its tool calls take; `generate` runs the
    provider (on a thread of the caller's choosing)."""
    talk = Conversation(
        prepared.generation, tools, rounds=prepared.model.max_tool_rounds, timeline=timeline
    )
    while True:
        result = await generate(talk.generation())
        calls = talk.answered(result.content, result.finish_reason, result.usage, result.tool_calls)
        if not calls:
            return talk
        await talk.run(calls)


async def stream(
    prepared: Prepared, tools: Toolbox, *, timeline: Timeline
) -> AsyncGenerator[Delta, None]:
    """The deltas of every round, as the model makes them; tools run between rounds. The last
    delta carries the finish reason, the usage of all rounds and the client's tool calls."""
    talk = Conversation(
        prepared.generation, tools, rounds=prepared.model.max_tool_rounds, timeline=timeline
    )
    while True:
        said: list[str] = []
        last = Delta(finish_reason="stop")
        async with aclosing(prepared.provider.stream(talk.generation())) as deltas:
            async for delta in deltas:
                if delta.content:
                    if not said and talk.texts:
                        yield Delta(content=SEPARATOR)
                    said.append(delta.content)
                    # the round's finish is not the answer's: it goes in the last delta
                    yield delta if delta.finish_reason is None else Delta(content=delta.content)
                if delta.finish_reason is not None:
                    last = delta
        calls = talk.answered(
            "".join(said), last.finish_reason or "stop", last.usage, last.tool_calls
        )
        if not calls:
            break
        await talk.run(calls)
    yield Delta(finish_reason=talk.finish_reason, usage=talk.usage, tool_calls=talk.client_calls)
