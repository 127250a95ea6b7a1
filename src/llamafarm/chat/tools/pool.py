"""MCP servers as sources of tools: connected on first use, kept open and shared by requests.

A connection is keyed by its server's whole config, so an edited server gets a new one. It is
held open by a task of its own on the event loop (the MCP SDK's sessions are anyio task
groups, which must be left by the task that entered them); requests send their calls through
it from their own tasks. Its tool list is read once, when it opens.

Errors, translated here where the SDK enters:

    a server that cannot start or connect, or
    does not list its tools within `start_timeout`  -> Unavailable (503) naming the server
    a tool that fails, is unknown, or does not
    answer within `timeout`                         -> ToolOutcome(error=True) with the reason

A call on a pooled connection that turns out to be closed (the process exited, the HTTP
session ended) opens a new one and is sent once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO, cast

import anyio
import httpx2
from mcp import Client, types
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from llamafarm import __version__
from llamafarm.config.models import McpServer
from llamafarm.config.policy import ConfigPolicy, env_name_allowed
from llamafarm.errors import Unavailable

log = logging.getLogger(__name__)

KEPT = 16
"""Connections kept open; opening one more closes the least recently used."""
LIST_PAGES = 100
"""Pages of `tools/list` read at most (a server whose cursor never ends cannot hang us)."""
STDERR_LINES = 20
"""Lines of a stdio server's stderr kept to explain why it failed."""
HTTP_READ_TIMEOUT = 300.0
"""Seconds an HTTP server's event stream may stay silent (it is held open between calls)."""
CLOSE_WAIT = 10.0
"""Seconds to wait for a connection to close (the SDK stops a stdio process within ~6 s)."""


@dataclass(frozen=True)
class McpTool:
    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolOutcome:
    """What a call gave the model to read: the tool's text, or why there is none."""

    text: str
    error: bool = False


class _Lost(Exception):
    """The connection closed under a call."""


class McpPool:
    """Open MCP connections of this process, used from one event loop (the app's); `close()`
    ends them (the app's shutdown)."""

    def __init__(self, *, kept: int = KEPT, policy: ConfigPolicy | None = None) -> None:
        self.kept = kept
        self.policy = policy or ConfigPolicy()
        self._connections: OrderedDict[str, _Connection] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def tools(self, server: McpServer) -> list[McpTool]:
        """The server's tools; connects (starting a stdio server) on first use."""
        return (await self._connect(server)).tools

    async def call(self, server: McpServer, tool: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Call a tool; every failure is an outcome the model can read, never a raise."""
        reused = _key(server) in self._connections
        for attempt in (1, 2):
            try:
                connection = await self._connect(server)
            except Unavailable as exc:
                return ToolOutcome(exc.detail, error=True)
            try:
                return await connection.call(tool, arguments)
            except _Lost:
                await self._drop(server, connection)
                if attempt == 2 or not reused:
                    return ToolOutcome(
                        f"MCP server {server.name!r} closed the connection during the call",
                        error=True,
                    )
        raise AssertionError("unreachable")

    async def close(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in connections))
        if self._closing:
            await asyncio.wait(self._closing)

    async def _connect(self, server: McpServer) -> _Connection:
        key = _key(server)
        async with self._locks.setdefault(key, asyncio.Lock()):
            connection = self._connections.get(key)
            if connection is not None and connection.open:
                self._connections.move_to_end(key)
                return connection
            if connection is not None:
                await self._drop(server, connection)
            self._check(server)
            connection = _Connection(server)
            try:
                await connection.start()
            except asyncio.CancelledError:  # the request went away: no one is left to use it
                self._close_later(connection)
                raise
            self._connections[key] = connection
            while len(self._connections) > self.kept:
                _, oldest = self._connections.popitem(last=False)
                self._close_later(oldest)
            return connection

    def _check(self, server: McpServer) -> None:
        """Checked again right before a process starts: the config was checked when it was
        written, but the file may have been edited by hand or the settings changed since."""
        if server.transport != "stdio" or server.command is None:
            return
        where = f"MCP server {server.name!r}"
        if not self.policy.command_allowed(server.command):
            raise Unavailable(self.policy.unallowed_command(where, server.command))
        refused = sorted(name for name in server.env if not env_name_allowed(name))
        if refused:
            raise Unavailable(f"{where}: its env may not set {', '.join(refused)}")

    async def _drop(self, server: McpServer, connection: _Connection) -> None:
        key = _key(server)
        if self._connections.get(key) is connection:
            del self._connections[key]
        await connection.close()

    def _close_later(self, connection: _Connection) -> None:
        task = asyncio.create_task(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class _Connection:
    """One MCP session, held open by its own task until `close()`."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.tools: list[McpTool] = []
        self._client: Client | None = None
        self._stderr = _Stderr(server.name) if server.transport == "stdio" else None
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[list[McpTool]] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self._client is not None and self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Connect and list the tools; Unavailable naming the server when it cannot."""
        name, timeout = self.server.name, self.server.start_timeout
        self._task = asyncio.create_task(self._hold(), name=f"mcp-server-{name}")
        try:
            async with asyncio.timeout(timeout):
                self.tools = await asyncio.shield(self._ready)
        except TimeoutError as exc:
            await self.close()
            raise Unavailable(
                f"MCP server {name!r} did not start within {timeout:g}s{await self._said()}"
            ) from exc
        except Exception as exc:
            await self.close()
            raise Unavailable(
                f"MCP server {name!r} could not start: {self._reason(exc)}{await self._said()}"
            ) from exc

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        client = self._client
        if client is None:
            raise _Lost
        try:
            result = await client.call_tool(
                tool, dict(arguments), read_timeout_seconds=self.server.timeout
            )
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                raise _Lost from exc
            if exc.code == types.REQUEST_TIMEOUT:
                return ToolOutcome(
                    f"the tool {tool!r} of MCP server {self.server.name!r} did not answer "
                    f"within {self.server.timeout:g}s",
                    error=True,
                )
            return ToolOutcome(f"MCP server {self.server.name!r}: {exc.error.message}", error=True)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise _Lost from exc
        except Exception as exc:  # a result that is not the protocol, a tool schema mismatch
            return ToolOutcome(
                f"MCP server {self.server.name!r}: {type(exc).__name__}: {exc}", error=True
            )
        text = result_text(result)
        return ToolOutcome(text, error=result.is_error)

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is None:
            return
        if not self._ready.done():
            self._ready.cancel()
            task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_WAIT)

    async def _hold(self) -> None:
        try:
            async with _session(self.server, self._stderr) as client:
                if self._stderr is not None:
                    self._stderr.spawned()
                tools = await _list_tools(self.server.name, client)
                if self._ready.done():  # given up on while it listed
                    return
                self._client = client
                self._ready.set_result(tools)
                await self._closing.wait()
        except asyncio.CancelledError:
            if not self._ready.done():
                self._ready.cancel()
            raise
        except Exception as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                log.warning("MCP server %r: the connection failed: %s", self.server.name, exc)
        finally:
            self._client = None
            if self._stderr is not None:
                self._stderr.spawned()

    def _reason(self, exc: BaseException) -> str:
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError):
            return f"no program {self.server.command!r} was found"
        if isinstance(leaf, PermissionError):
            return f"the program {self.server.command!r} cannot be run (permission denied)"
        if isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED:
            if self.server.transport == "stdio":
                return "the process closed the connection before its handshake"
            return "the connection closed before the handshake"
        text = str(leaf)
        return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__

    async def _said(self) -> str:
        """What a stdio server wrote on stderr, to explain its failure."""
        if self._stderr is None:
            return ""
        lines = await self._stderr.tail()
        return f"; it wrote: {' | '.join(lines)}" if lines else ""


@asynccontextmanager
async def _session(server: McpServer, stderr: _Stderr | None) -> AsyncIterator[Client]:
    """A connected client of the server, by its transport."""
    info = types.Implementation(name="llamafarm", version=__version__)
    async with AsyncExitStack() as stack:
        if server.transport == "stdio":
            assert server.command is not None and stderr is not None  # checked by the config
            parameters = StdioServerParameters(
                command=server.command, args=server.args, env=server.env or None
            )
            transport: Any = stdio_client(parameters, errlog=stderr.writer)
        elif server.transport == "http":
            assert server.url is not None
            timeout = httpx2.Timeout(server.timeout, read=max(server.timeout, HTTP_READ_TIMEOUT))
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=server.headers, timeout=timeout)
            )
            transport = streamable_http_client(server.url, http_client=http)
        else:
            assert server.url is not None
            transport = sse_client(server.url, headers=server.headers or None)
        client = await stack.enter_async_context(Client(transport, client_info=info, cache=None))
        yield client


async def _list_tools(name: str, client: Client) -> list[McpTool]:
    tools: list[McpTool] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools += [
            McpTool(
                server=name,
                name=tool.name,
                description=tool.description or tool.title or "",
                input_schema=dict(tool.input_schema),
            )
            for tool in page.tools
        ]
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text for the model: its text parts, a note for each other part, or its
    structured content as JSON when it has no parts."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        else:  # image, audio: a text model cannot read them
            parts.append(f"[{block.type} ({block.mime_type})]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class _Stderr:
    """A stdio server's stderr: a pipe read by a thread that logs each line (debug) and keeps
    the last few to explain a failure."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: deque[str] = deque(maxlen=STDERR_LINES)
        read, write = os.pipe()
        self.writer = cast(TextIO, os.fdopen(write, "w"))
        self._reader = threading.Thread(
            target=self._read, args=(read,), name=f"mcp-stderr-{name}", daemon=True
        )
        self._reader.start()

    def spawned(self) -> None:
        """Let go of our end once the process has it, so its exit ends the reading."""
        with contextlib.suppress(OSError):
            self.writer.close()

    async def tail(self) -> list[str]:
        self.spawned()
        await asyncio.to_thread(self._reader.join, 2.0)  # the rest, once the process is gone
        return list(self.lines)

    def _read(self, fd: int) -> None:
        with open(fd, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                line = line.rstrip()
                if line.strip():
                    self.lines.append(line.strip())
                    log.debug("MCP server %r: %s", self.name, line)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (anyio task groups wrap them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _key(server: McpServer) -> str:
    return json.dumps(server.model_dump(mode="json"), sort_keys=True)
