"""The MCP pool and toolbox against a real stdio MCP server (tests/chat/mcp_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llamafarm.chat.providers.base import ToolCall
from llamafarm.chat.tools import McpPool, open_toolbox
from llamafarm.config import ConfigPolicy
from llamafarm.config.models import McpServer
from llamafarm.errors import Unavailable

SCRIPT = Path(__file__).parent / "mcp_server.py"

pytestmark = pytest.mark.slow  # each test starts MCP server processes

T = TypeVar("T")
ALLOWED = ConfigPolicy(
    mcp_commands=frozenset({sys.executable, "no-such-program-lf", "no-such-a", "no-such-b"})
)
"""The operator's allowed commands: the test server's interpreter, and missing ones."""


def server(name: str = "calc", *, log: Path | None = None, **config: Any) -> McpServer:
    """The test server, started as `python tests/chat/mcp_server.py NAME`."""
    env = {"MCP_CALLS_LOG": str(log)} if log else {}
    values: dict[str, Any] = {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SCRIPT), name],
        "env": env,
        **config,
    }
    return McpServer.model_validate(values)


def with_pool(work: Callable[[McpPool], Awaitable[T]]) -> T:
    """Run `work` with a pool on a loop of its own; the pool is closed after it."""

    async def run() -> T:
        pool = McpPool(policy=ALLOWED)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def open_connections(pool: McpPool) -> int:
    """Connections open now (each stdio one a running process)."""
    return sum(1 for c in pool._connections.values() if c.open)


def logged(log: Path) -> list[Any]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tools_are_listed_called_and_one_process_serves_every_call(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calc = server(log=calls)

    async def work(pool: McpPool) -> int:
        tools = {tool.name: tool for tool in await pool.tools(calc)}
        assert set(tools) == {"add", "fail", "sleep", "pid", "crash"}
        assert tools["add"].server == "calc" and tools["add"].description == "Add two integers."
        assert tools["add"].input_schema["required"] == ["a", "b"]
        added = await pool.call(calc, "add", {"a": 2, "b": 3})
        assert (added.text, added.error) == ("5", False)
        first, second = await asyncio.gather(pool.call(calc, "pid", {}), pool.call(calc, "pid", {}))
        assert first.text == second.text
        assert await pool.tools(calc) == list(tools.values())
        assert open_connections(pool) == 1
        return int(first.text)

    pid = with_pool(work)
    assert logged(calls) == [{"tool": "add", "arguments": {"a": 2, "b": 3}}]
    assert not alive(pid)  # closing the pool ends the server


def test_a_failing_or_unknown_tool_is_an_error_result() -> None:
    calc = server()

    async def work(pool: McpPool) -> None:
        failed = await pool.call(calc, "fail", {"reason": "not today"})
        assert failed.error and "refused: not today" in failed.text
        unknown = await pool.call(calc, "nope", {})
        assert unknown.error and "nope" in unknown.text
        invalid = await pool.call(calc, "add", {"a": "two"})
        assert invalid.error and "a" in invalid.text
        assert (await pool.call(calc, "add", {"a": 1, "b": 1})).text == "2"

    with_pool(work)


def test_a_tool_that_takes_too_long_times_out_and_the_server_goes_on() -> None:
    calc = server(timeout=1)

    async def work(pool: McpPool) -> None:
        before = await pool.call(calc, "pid", {})
        slow = await pool.call(calc, "sleep", {"seconds": 60})
        assert slow.error
        assert slow.text == "the tool 'sleep' of MCP server 'calc' did not answer within 1s"
        after = await pool.call(calc, "pid", {})
        assert after.text == before.text and not after.error

    with_pool(work)


def test_a_server_that_died_is_started_again(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calc = server(log=calls)

    async def work(pool: McpPool) -> None:
        pid = int((await pool.call(calc, "pid", {})).text)
        os.kill(pid, signal.SIGKILL)
        again = await pool.call(calc, "add", {"a": 1, "b": 2})
        assert (again.text, again.error) == ("3", False)
        assert int((await pool.call(calc, "pid", {})).text) != pid
        assert open_connections(pool) == 1

        # A server that dies during a call: the call is an error, sent once more on a new
        # connection (a pooled connection's death cannot be told from the call's).
        crashed = await pool.call(calc, "crash", {})
        assert crashed.error and "closed the connection" in crashed.text

    with_pool(work)
    assert [entry["tool"] for entry in logged(calls)] == ["add", "crash", "crash"]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"command": "no-such-program-lf"}, "no program 'no-such-program-lf' was found"),
        (
            {"args": ["-c", "import sys; sys.exit('config file missing')"]},
            "closed the connection before its handshake; it wrote: config file missing",
        ),
    ],
)
def test_a_server_that_cannot_start_is_named(config: dict[str, Any], reason: str) -> None:
    broken = server("ghost", **config)

    async def work(pool: McpPool) -> None:
        with pytest.raises(Unavailable) as raised:
            await pool.tools(broken)
        assert raised.value.status == 503
        assert raised.value.detail.startswith("MCP server 'ghost' could not start: ")
        assert reason in raised.value.detail
        assert open_connections(pool) == 0
        # A call through it is an error result, not a raise.
        outcome = await pool.call(broken, "add", {})
        assert outcome.error and "'ghost'" in outcome.text

    with_pool(work)


def test_a_server_that_never_answers_its_handshake_times_out() -> None:
    mute = server("mute", args=["-c", "import time; time.sleep(60)"], start_timeout=0.5)

    async def work(pool: McpPool) -> None:
        with pytest.raises(Unavailable) as raised:
            await pool.tools(mute)
        assert raised.value.detail == "MCP server 'mute' did not start within 0.5s"

    with_pool(work)


def test_the_toolbox_names_tools_apart_and_reads_bad_calls(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    weather = {"type": "function", "function": {"name": "pid", "parameters": {}}}

    async def work(pool: McpPool) -> None:
        box = await open_toolbox(pool, [server("calc", log=calls), server("math")], [weather])
        names = [spec["function"]["name"] for spec in box.specs()]
        # `add` is on both servers, `pid` is also the client's: those take the server's name.
        assert sorted(names) == [
            "calc__add",
            "calc__crash",
            "calc__fail",
            "calc__pid",
            "calc__sleep",
            "math__add",
            "math__crash",
            "math__fail",
            "math__pid",
            "math__sleep",
            "pid",
        ]
        assert box.is_client("pid") and not box.is_client("calc__pid")
        spec = next(s for s in box.specs() if s["function"]["name"] == "math__add")
        assert spec["function"]["parameters"]["required"] == ["a", "b"]

        ran = await box.run(ToolCall(id="c1", name="calc__add", arguments='{"a": 4, "b": 5}'))
        assert (ran.content, ran.error, ran.server, ran.arguments) == (
            "9",
            None,
            "calc",
            {"a": 4, "b": 5},
        )
        bad = await box.run(ToolCall(id="c2", name="calc__add", arguments="{not json"))
        assert bad.content.startswith("Error: the arguments are not a JSON object")
        unknown = await box.run(ToolCall(id="c3", name="divide", arguments="{}"))
        assert unknown.content.startswith("Error: there is no tool 'divide'")
        failed = await box.run(ToolCall(id="c4", name="math__fail", arguments='{"reason": "x"}'))
        assert (
            failed.content.startswith("Error: ") and failed.error and "refused: x" in failed.error
        )

    with_pool(work)
    assert [entry["tool"] for entry in logged(calls)] == ["add"]


def test_opening_a_toolbox_names_every_server_that_cannot_start() -> None:
    async def work(pool: McpPool) -> None:
        with pytest.raises(Unavailable) as raised:
            await open_toolbox(
                pool,
                [
                    server("calc"),
                    server("one", command="no-such-a"),
                    server("two", command="no-such-b"),
                ],
                [],
            )
        assert "'one'" in raised.value.detail and "'two'" in raised.value.detail
        assert "'calc'" not in raised.value.detail

    with_pool(work)
