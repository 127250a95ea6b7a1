"""`lf mcp`: how MCP clients connect to the server's tools, or those tools over stdio."""

from __future__ import annotations

import contextlib
import json
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from llamafarm.cli.common import client


def mcp(
    ctx: typer.Context,
    stdio: Annotated[
        bool,
        typer.Option(
            "--stdio",
            help="Serve the tools on stdin/stdout, calling the server at --server-url.",
        ),
    ] = False,
) -> None:
    """Print the MCP URL and client configs; with --stdio, serve the tools for desktop clients."""
    api = client(ctx)
    base_url = api.base_url
    if stdio:
        import anyio

        from llamafarm.api.mcp import serve_stdio

        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(partial(serve_stdio, base_url, api_key=api.api_key))
        return
    # With a key in use, the configs show where it goes, not the key itself.
    url: dict[str, Any] = {"url": f"{base_url}/mcp"}
    command: dict[str, Any] = {
        "command": _lf(),
        "args": ["--server-url", base_url, "mcp", "--stdio"],
    }
    if api.api_key:
        url["headers"] = {"Authorization": "Bearer <your LF_API_KEY>"}
        command["env"] = {"LF_API_KEY": "<your LF_API_KEY>"}
    print(f"MCP endpoint (streamable HTTP, served by `lf start`): {base_url}/mcp")
    print("\nClients that connect to a URL (Cursor, Claude Code, VS Code…):")
    print(_config(url))
    print("\nClients that start a command and talk over stdio (Claude Desktop…):")
    print(_config(command))


def _config(server: dict[str, Any]) -> str:
    return json.dumps({"mcpServers": {"llamafarm": server}}, indent=2)


def _lf() -> str:
    """This installation's `lf`, by full path: desktop clients do not inherit the shell's PATH."""
    beside = Path(sys.executable).parent / "lf"
    return str(beside) if beside.is_file() else "lf"
