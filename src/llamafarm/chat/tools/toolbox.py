"""The tools of one completion: the MCP tools its model may use and the client's own `tools`.

Each MCP tool is offered under its own name, made safe for OpenAI's function names
(`^[A-Za-z0-9_-]{1,64}$`). When two servers offer the same name, or a client's tool has it, that
tool is offered as `{server}__{tool}` instead; a name that still clashes is left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llamafarm.chat.providers.base import ToolCall
from llamafarm.chat.tools.pool import McpPool, McpTool
from llamafarm.config.models import McpServer
from llamafarm.errors import Unavailable

log = logging.getLogger(__name__)

NAME = re.compile(r"[^A-Za-z0-9_-]")
NAME_LENGTH = 64
MAX_RESULT_CHARS = 20_000
"""Characters of a tool's result the model reads; the rest is cut (it would fill the context)."""


@dataclass(frozen=True)
class Offered:
    """An MCP tool as the model sees it."""

    name: str
    server: McpServer
    tool: McpTool

    def spec(self) -> dict[str, Any]:
        parameters = self.tool.input_schema or {"type": "object", "properties": {}}
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.tool.description,
                "parameters": parameters,
            },
        }


@dataclass(frozen=True)
class ToolRun:
    """One call as it went: what the model reads (`content`) and what the event log keeps."""

    call: ToolCall
    content: str
    error: str | None
    server: str | None
    arguments: Any


@dataclass(frozen=True)
class Toolbox:
    pool: McpPool | None = None
    mcp: Mapping[str, Offered] = field(default_factory=dict)
    client: Sequence[Mapping[str, Any]] = ()

    def specs(self) -> list[dict[str, Any]]:
        """Every tool, as OpenAI's `tools`: the client's first."""
        return [dict(spec) for spec in self.client] + [o.spec() for o in self.mcp.values()]

    def is_client(self, name: str) -> bool:
        return name not in self.mcp and name in client_names(self.client)

    async def run(self, call: ToolCall) -> ToolRun:
        """Call an MCP tool; whatever goes wrong is a result the model can read."""
        offered = self.mcp.get(call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = call.arguments
        if offered is None or self.pool is None:
            known = ", ".join(sorted(self.mcp)) or "none"
            return _failed(call, f"there is no tool {call.name!r} (tools: {known})", arguments)
        server = offered.server.name
        if not isinstance(arguments, dict):
            return _failed(
                call, f"the arguments are not a JSON object: {call.arguments[:200]!r}", arguments
            )
        outcome = await self.pool.call(offered.server, offered.tool.name, arguments)
        if outcome.error:
            return _failed(call, outcome.text, arguments, server=server)
        return ToolRun(call, _cut(outcome.text), None, server, arguments)


async def open_toolbox(
    pool: McpPool, servers: Sequence[McpServer], client: Sequence[Mapping[str, Any]]
) -> Toolbox:
    """Connect the servers (at once) and name their tools; Unavailable naming every server
    that cannot start."""
    listed = await asyncio.gather(*(pool.tools(s) for s in servers), return_exceptions=True)
    failures = [r for r in listed if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, Unavailable):
            raise failure
    if failures:
        raise Unavailable("; ".join(f.detail for f in failures if isinstance(f, Unavailable)))
    tools = [
        (server, tool)
        for server, found in zip(servers, listed, strict=True)
        if isinstance(found, list)
        for tool in found
    ]
    return Toolbox(pool=pool, mcp=_names(tools, client_names(client)), client=client)


def client_names(client: Sequence[Mapping[str, Any]]) -> set[str]:
    names = set()
    for spec in client:
        function = spec.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _names(tools: list[tuple[McpServer, McpTool]], taken: set[str]) -> dict[str, Offered]:
    plain = Counter(_safe(tool.name) for _, tool in tools)
    offered: dict[str, Offered] = {}
    for server, tool in tools:
        name = _safe(tool.name)
        if plain[name] > 1 or name in taken:
            name = _safe(f"{server.name}__{tool.name}")
        if name in offered or name in taken:
            log.warning("MCP server %r: tool %r left out, its name clashes", server.name, tool.name)
            continue
        offered[name] = Offered(name=name, server=server, tool=tool)
    return offered


def _safe(name: str) -> str:
    return NAME.sub("_", name)[:NAME_LENGTH] or "_"


def _cut(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return f"{text[:MAX_RESULT_CHARS]}\n[… cut: {len(text) - MAX_RESULT_CHARS} more characters]"


def _failed(call: ToolCall, error: str, arguments: Any, *, server: str | None = None) -> ToolRun:
    return ToolRun(call, f"Error: {_cut(error)}", error, server, arguments)
