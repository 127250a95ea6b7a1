"""`lf chat`'s streaming against a real loopback server (the stub OpenAI server): no read
timeout, "went away" only when the connection dropped, HTTP errors said plainly, Ctrl-C closes
the connection."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from rich.console import Console

from llamafarm.cli import chat
from llamafarm.cli.client import ApiClient, CliError
from tests.chat.openai_server import OpenAIServer

PATH = "/v1/chat/completions"


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What `lf chat` prints on stdout (not a terminal, so no spinner)."""
    text = io.StringIO()
    monkeypatch.setattr(chat, "out", Console(file=text, width=200))
    monkeypatch.setattr(chat, "err", Console(file=io.StringIO(), width=200))
    return text


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(pieces=["Hel", "lo", " there."]) as server:
        yield server


def api(server: OpenAIServer, timeout: float = 5.0) -> ApiClient:
    return ApiClient(server.base_url.removesuffix("/v1"), timeout=timeout)


def say(client: ApiClient) -> str | None:
    return chat.say(client, PATH, "Hi", {"stream": True}, None)


def test_a_quiet_server_longer_than_the_timeout_is_waited_for(
    server: OpenAIServer, printed: io.StringIO
) -> None:
    server.delay = 0.6  # between chunks: more than the client's (connect) timeout
    say(api(server, timeout=0.2))
    assert printed.getvalue() == "Hello there.\n"


def test_a_dropped_connection_is_the_server_going_away(
    server: OpenAIServer, printed: io.StringIO
) -> None:
    server.mode, server.drop_after = "drop", 2
    with pytest.raises(CliError, match="went away: the connection dropped"):
        say(api(server))
    assert printed.getvalue().startswith("Hello")


def test_an_http_error_is_said_with_its_status(server: OpenAIServer) -> None:
    server.mode, server.status = "error", 503
    server.error_body = b'{"detail": "model not loaded: try later"}'
    with pytest.raises(CliError, match=r"^Error 503: model not loaded: try later$"):
        say(api(server))


def test_no_server_is_unreachable_not_gone() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(CliError, match="Cannot reach the llamafarm server"):
        say(ApiClient(f"http://127.0.0.1:{port}"))


def test_ctrl_c_closes_the_stream(
    server: OpenAIServer, printed: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.mode, server.stall_after, server.keepalive = "stall_stream", 1, 0.05

    pressed: list[object] = []

    def interrupted(*text: object, **__: object) -> None:
        if text and not pressed:  # Ctrl-C while the first token is printed
            pressed.append(text)
            raise KeyboardInterrupt

    monkeypatch.setattr(chat.out, "print", interrupted)
    with pytest.raises(chat.Cancelled):
        say(api(server))
    # The server's next keep-alive write fails: the client closed the connection.
    assert server.client_gone.wait(10)
    assert pressed == [("Hel",)]
