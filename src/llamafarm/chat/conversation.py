"""The rounds of one completion: the model answers; when it calls MCP tools they run (at once),
their results go back to it as `tool` messages, and it answers again.

Up to the model's `max_tool_rounds` rounds of tool calls; then one last call with
`tool_choice: "none"`, whose text is the answer (tool calls it makes anyway are dropped). A call
of one of the client's own `tools` ends the completion: those calls go back to the client
(finish reason `tool_calls`), which runs them and sends their results in its next request.
The client's `tool_choice` applies to the first round only (a `required` would never end).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from llamafarm.chat.providers.base import FinishReason, Generation, Message, ToolCall, Usage
from llamafarm.chat.tools import Toolbox, ToolRun
from llamafarm.events import Timeline

SEPARATOR = "\n\n"
"""Between the texts of two rounds (what a model says before calling tools, and its answer)."""


class Conversation:
    """The state of one completion across its rounds."""

    def __init__(
        self, generation: Generation, toolbox: Toolbox, *, rounds: int, timeline: Timeline
    ) -> None:
        self.base = generation
        self.messages = list(generation.messages)
        self.toolbox = toolbox
        self.rounds = rounds
        self.timeline = timeline
        self.round = 0
        """Rounds of tool calls run so far."""
        self.texts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: FinishReason = "stop"
        self.client_calls: tuple[ToolCall, ...] = ()
        self._specs = toolbox.specs()

    @property
    def text(self) -> str:
        """What the model said, over all rounds."""
        return SEPARATOR.join(self.texts)

    @property
    def last_round(self) -> bool:
        return self.round >= self.rounds

    def generation(self) -> Generation:
        """What to ask the model this round."""
        if not self._specs:
            return replace(self.base, messages=list(self.messages), tools=(), tool_choice=None)
        choice = self.base.tool_choice if self.round == 0 else None
        return replace(
            self.base,
            messages=list(self.messages),
            tools=self._specs,
            tool_choice="none" if self.last_round else choice,
        )

    def answered(
        self,
        content: str,
        finish_reason: FinishReason,
        usage: Usage | None,
        tool_calls: tuple[ToolCall, ...],
    ) -> list[ToolCall]:
        """Take this round's answer; the MCP calls to run before the next round, or none when
        the completion is over."""
        if usage is not None:
            before = self.usage or Usage(0, 0)
            self.usage = Usage(
                before.prompt_tokens + usage.prompt_tokens,
                before.completion_tokens + usage.completion_tokens,
            )
        if content.strip():
            self.texts.append(content)
        if not tool_calls or self.last_round or not self._specs:
            self.finish_reason = "stop" if finish_reason == "tool_calls" else finish_reason
            return []
        client = tuple(c for c in tool_calls if self.toolbox.is_client(c.name))
        if client:
            # The MCP calls of the same round are dropped: the client's next request goes on
            # from these, and the model may call them again then.
            self.client_calls, self.finish_reason = client, "tool_calls"
            self.timeline.mark("tool_calls_returned", tools=[c.name for c in client])
            return []
        self.messages.append(Message("assistant", content, tool_calls=tool_calls))
        return list(tool_calls)

    async def run(self, calls: list[ToolCall]) -> None:
        """Run the calls at once; their results become `tool` messages in the calls' order,
        and `tool_call` sub-events of the timeline in the order they began."""
        self.round += 1

        async def timed(call: ToolCall) -> tuple[float, float, ToolRun]:
            begun = self.timeline.elapsed_ms()
            run = await self.toolbox.run(call)
            return begun, self.timeline.elapsed_ms(), run

        runs = await asyncio.gather(*(timed(call) for call in calls))
        for _, _, run in runs:
            self.messages.append(Message("tool", run.content, tool_call_id=run.call.id))
        for begun, ended, run in sorted(runs, key=lambda timed: timed[0]):
            self._record(begun, ended, run)

    def _record(self, begun: float, ended: float, run: ToolRun) -> None:
        data: dict[str, Any] = {
            "tool": run.call.name,
            "server": run.server,
            "arguments": run.arguments,
            "round": self.round,
            "status": "error" if run.error is not None else "success",
            "error": run.error,
            "result_chars": len(run.content),
        }
        self.timeline.span("tool_call", begun, ended, **data)
