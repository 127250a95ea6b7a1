"""A small MCP server over stdio, for tests: `python tests/chat/mcp_server.py [name]`.

Tools: `add(a, b)`, `fail(reason)` (an error result), `sleep(seconds)`, `pid()` (the server's
process id) and `crash()` (the process exits mid-call). When `MCP_CALLS_LOG` names a file,
each call appends `{"tool", "arguments"}` to it as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer(sys.argv[1] if len(sys.argv) > 1 else "calc", log_level="WARNING")


def _record(tool: str, **arguments: Any) -> None:
    path = os.environ.get("MCP_CALLS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    _record("add", a=a, b=b)
    return str(a + b)


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the given reason."""
    _record("fail", reason=reason)
    raise ToolError(f"refused: {reason}")


@server.tool()
async def sleep(seconds: float) -> str:
    """Answers after `seconds`."""
    _record("sleep", seconds=seconds)
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def crash() -> str:
    """The process exits without answering."""
    _record("crash")
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
