"""Tools for chat models: MCP servers' tools (pooled connections) and the client's own."""

from __future__ import annotations

from llamafarm.chat.tools.pool import McpPool, McpTool, ToolOutcome
from llamafarm.chat.tools.toolbox import Toolbox, ToolRun, open_toolbox

__all__ = ["McpPool", "McpTool", "ToolOutcome", "ToolRun", "Toolbox", "open_toolbox"]
