"""The OpenAI-compatible provider against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llamafarm.chat.providers import PROVIDERS, OpenAICompatibleProvider, create_provider
from llamafarm.chat.providers.base import Delta, Generation, Message, ToolCall, Usage
from llamafarm.chat.providers.openai_compat import _env_proxy, default_base_url
from llamafarm.config.models import ModelConfig
from llamafarm.errors import (
    BadGateway,
    ConfigInvalid,
    GatewayTimeout,
    LfError,
    ProviderUnavailable,
)
from tests.chat.openai_server import OpenAIServer, Reply

QUICK = 0.5
"""The timeout the failure tests configure; each must fail well within `BOUND` seconds."""
BOUND = 30.0
"""Seconds an error may take: far below the 60 s default timeouts, so a hang still shows,
and loose enough for a loaded machine (no test asserts speed)."""

HELLO = Generation(messages=[Message("system", "Be brief."), Message("user", "Hi")])

Make = Callable[..., OpenAICompatibleProvider]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as fake:
        yield fake


@pytest.fixture
def make() -> Iterator[Make]:
    """Providers built from keyword config; closed after the test."""
    opened: list[OpenAICompatibleProvider] = []

    def build(
        *, timeout: float = QUICK, env: dict[str, str] | None = None, **config: Any
    ) -> OpenAICompatibleProvider:
        config = {"name": "bot", "provider": "openai", "model": "fake-model", **config}
        provider = OpenAICompatibleProvider(
            ModelConfig.model_validate(config), timeout=timeout, env=env or {}
        )
        opened.append(provider)
        return provider

    yield build
    for provider in opened:
        provider.close()


def fails(
    kind: type[LfError], provider: OpenAICompatibleProvider, call: Callable[[], object]
) -> str:
    """Runs `call`, expecting `kind` soon, with a message naming the model and the URL."""
    started = time.monotonic()
    with pytest.raises(kind) as caught:
        call()
    elapsed = time.monotonic() - started
    assert type(caught.value) is kind, caught.value
    assert elapsed < BOUND, f"took {elapsed:.2f}s"
    message = caught.value.detail
    assert repr(provider.model) in message and provider.base_url in message, message
    return message


def drain(provider: OpenAICompatibleProvider, generation: Generation = HELLO) -> list[Delta]:
    return read(provider, generation, [])


def read(
    provider: OpenAICompatibleProvider, generation: Generation, received: list[Delta]
) -> list[Delta]:
    """Stream on an event loop of its own, appending each delta to `received` as it comes."""

    async def run() -> list[Delta]:
        try:
            async for delta in provider.stream(generation):
                received.append(delta)
        finally:
            await provider.streams.close()  # the pooled connection belongs to this loop
        return received

    return asyncio.run(run())


def refused_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def backlogged() -> Iterator[str]:
    """A base URL whose listener never accepts and has a full backlog: connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    for filler in fillers:
        filler.close()
    listener.close()


# --- answers ------------------------------------------------------------------------------


def test_complete_parses_the_answer_and_sends_the_wire_format(
    server: OpenAIServer, make: Make
) -> None:
    provider = make(base_url=server.base_url)
    completion = provider.complete(HELLO)
    assert completion.content == "Hello from the fake model."
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(prompt_tokens=11, completion_tokens=7)
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": False,
        "max_tokens": 512,  # none asked: the provider's bound, not the server's (maybe none)
    }
    assert "authorization" not in request.headers
    assert provider.name == "bot"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "stop"), ("tool_calls", "stop")],
)
def test_finish_reasons_map_to_stop_or_length(
    server: OpenAIServer, make: Make, sent: str, expected: str
) -> None:
    server.finish_reason = sent
    provider = make(base_url=server.base_url)
    assert provider.complete(HELLO).finish_reason == expected
    assert drain(provider)[-1].finish_reason == expected


def test_stream_yields_pieces_then_finish_and_usage(server: OpenAIServer, make: Make) -> None:
    server.text, server.chunk_size, server.comment = "<think>hmm</think>The answer.", 5, "ping"
    provider = make(base_url=server.base_url)
    deltas = drain(provider)
    pieces = [d.content for d in deltas[:-1]]
    assert pieces == server.chunks() and len(pieces) == 6
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])
    assert deltas[-1] == Delta(content="", finish_reason="stop", usage=Usage(11, 7))
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert server.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(("where", "usage"), [("always", Usage(11, 7)), ("never", None)])
def test_stream_usage_in_the_finish_chunk_or_none(
    server: OpenAIServer, make: Make, where: Any, usage: Usage | None
) -> None:
    server.stream_usage = where
    deltas = drain(make(base_url=server.base_url))
    assert deltas[-1].usage == usage
    assert "".join(d.content for d in deltas) == server.text


def test_separate_reasoning_becomes_a_think_block(server: OpenAIServer, make: Make) -> None:
    server.text, server.reasoning = "42.", "Six times seven."
    provider = make(base_url=server.base_url)
    assert provider.complete(HELLO).content == "<think>Six times seven.</think>42."
    assert "".join(d.content for d in drain(provider)) == "<think>Six times seven.</think>42."


def test_a_server_that_ignores_stream_true_still_streams(server: OpenAIServer, make: Make) -> None:
    server.mode, server.garbage_type = "garbage", "application/json"
    server.garbage = b'{"choices": [{"message": {"content": "whole"}, "finish_reason": "length"}]}'
    deltas = drain(make(base_url=server.base_url))
    assert deltas == [Delta(content="whole"), Delta(finish_reason="length")]


def test_api_key_is_sent_as_a_bearer_token(server: OpenAIServer, make: Make) -> None:
    provider = make(base_url=server.base_url, api_key="sk-test")
    provider.complete(HELLO)
    drain(provider)
    provider.check()
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer sk-test"] * 3


def test_extra_parameters_are_merged_and_request_values_win(
    server: OpenAIServer, make: Make
) -> None:
    provider = make(base_url=server.base_url)
    extra: dict[str, object] = {
        "temperature": 0.1,
        "seed": 7,
        "model": "other",
        "stream": True,
        "stream_options": {"include_usage": False},
    }
    generation = Generation(
        messages=[Message("user", "Hi")],
        max_tokens=32,
        temperature=0.5,
        top_p=0.9,
        stop=["\n\n", "END"],
        extra=extra,
    )
    provider.complete(generation)
    drain(provider, generation)
    whole, streamed = (r.body for r in server.requests)
    assert whole["seed"] == 7 and whole["temperature"] == 0.5 and whole["model"] == "fake-model"
    assert whole["stream"] is False and "stream_options" not in whole
    assert (whole["max_tokens"], whole["top_p"], whole["stop"]) == (32, 0.9, ["\n\n", "END"])
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": False}
    assert "stop" not in provider.payload(HELLO, stream=False)


def test_top_k_goes_to_every_server_but_openai(make: Make) -> None:
    generation = Generation(messages=[Message("user", "Hi")], top_k=40)
    assert (
        make(base_url="http://127.0.0.1:8000/v1").payload(generation, stream=False)["top_k"] == 40
    )
    assert make(provider="ollama").payload(generation, stream=False)["top_k"] == 40
    assert "top_k" not in make().payload(generation, stream=False)  # api.openai.com
    assert "top_k" not in make(base_url="http://x:1/v1").payload(HELLO, stream=False)


# --- tools --------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALLS = [
    {"id": "call_a", "name": "weather", "arguments": {"city": "Paris"}},
    {"id": "call_b", "name": "weather", "arguments": {"city": "Lyon, the second largest"}},
]
EXPECTED_CALLS = (
    ToolCall(id="call_a", name="weather", arguments='{"city": "Paris"}'),
    ToolCall(id="call_b", name="weather", arguments='{"city": "Lyon, the second largest"}'),
)


def test_tools_and_tool_turns_go_out_in_the_wire_format(server: OpenAIServer, make: Make) -> None:
    provider = make(base_url=server.base_url)
    call = ToolCall(id="call_1", name="weather", arguments='{"city": "Oslo"}')
    generation = Generation(
        messages=[
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "cold", tool_call_id="call_1"),
        ],
        tools=[WEATHER],
        tool_choice="auto",
    )
    provider.complete(generation)
    body = server.requests[-1].body
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "auto"
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": "cold", "tool_call_id": "call_1"},
    ]
    provider.complete(HELLO)
    assert "tools" not in server.requests[-1].body  # none offered: none sent
    assert "tool_choice" not in server.requests[-1].body


def test_complete_parses_tool_calls(server: OpenAIServer, make: Make) -> None:
    server.replies = [Reply(text="Let me look.", tool_calls=CALLS, finish_reason="stop")]
    completion = make(base_url=server.base_url).complete(HELLO)
    assert completion.tool_calls == EXPECTED_CALLS
    assert completion.content == "Let me look."
    assert completion.finish_reason == "tool_calls"  # whatever the server said


def test_stream_assembles_tool_calls_sent_in_pieces(server: OpenAIServer, make: Make) -> None:
    server.replies = [Reply(text="Let me look.", tool_calls=CALLS)]
    server.chunk_size = 3  # arguments in pieces of 3 characters, the two calls interleaved
    deltas = drain(make(base_url=server.base_url))
    *pieces, last = deltas
    assert "".join(d.content for d in pieces) == "Let me look."
    assert all(not d.tool_calls for d in pieces)
    assert last.tool_calls == EXPECTED_CALLS
    assert last.finish_reason == "tool_calls"


def test_a_tool_call_without_a_name_is_a_bad_gateway(server: OpenAIServer, make: Make) -> None:
    server.replies = [Reply(tool_calls=[{"name": ""}])]
    provider = make(base_url=server.base_url)
    assert "without a function name" in fails(
        BadGateway, provider, lambda: provider.complete(HELLO)
    )


# --- streaming lifecycle ------------------------------------------------------------------


def test_closing_the_stream_early_closes_the_connection(server: OpenAIServer, make: Make) -> None:
    server.text, server.chunk_size, server.delay = "x" * 200, 1, 0.02

    provider = make(base_url=server.base_url)

    async def three() -> list[str]:
        stream = provider.stream(HELLO)
        first = [(await anext(stream)).content for _ in range(3)]
        await stream.aclose()
        await provider.streams.close()
        return first

    assert asyncio.run(three()) == ["x", "x", "x"]
    assert server.client_gone.wait(BOUND), "the server never saw the client go"
    assert server.chunks_sent < 200


def test_no_request_before_the_stream_is_read(server: OpenAIServer, make: Make) -> None:
    provider = make(base_url=server.base_url)

    async def first() -> str:
        stream = provider.stream(HELLO)
        assert server.requests == []
        content = (await anext(stream)).content
        await stream.aclose()
        await provider.streams.close()
        return content

    assert asyncio.run(first()) == "Hell"


def test_a_body_that_goes_on_after_done_does_not_hold_the_answer(
    server: OpenAIServer, make: Make
) -> None:
    """A server that keeps the body open after `[DONE]`: every delta comes, then the stream
    ends (the connection is dropped, not pooled) instead of waiting for the server."""
    server.mode = "linger"
    deltas = drain(make(base_url=server.base_url))
    assert "".join(d.content for d in deltas) == server.text
    assert deltas[-1].finish_reason == "stop"


def test_the_connection_is_kept_for_the_next_stream(server: OpenAIServer, make: Make) -> None:
    """What follows `[DONE]` is read, so the connection goes back to the pool."""
    provider = make(base_url=server.base_url)

    async def twice() -> None:
        for _ in range(2):
            async for _delta in provider.stream(HELLO):
                pass
        await provider.streams.close()

    asyncio.run(twice())
    assert len(server.requests) == 2
    assert server.connections_opened == 1


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_kind", ["openai", "ollama"])
def test_connection_refused_is_unavailable(make: Make, provider_kind: str) -> None:
    provider = make(provider=provider_kind, base_url=f"http://127.0.0.1:{refused_port()}/v1")
    message = fails(ProviderUnavailable, provider, lambda: provider.complete(HELLO))
    assert "cannot connect" in message
    fails(ProviderUnavailable, provider, lambda: drain(provider))
    fails(ProviderUnavailable, provider, provider.check)


def test_connect_timeout_is_a_gateway_timeout(backlogged: str, make: Make) -> None:
    provider = make(base_url=backlogged)
    assert "could not connect within 0.5s" in fails(
        GatewayTimeout, provider, lambda: provider.complete(HELLO)
    )
    fails(GatewayTimeout, provider, lambda: drain(provider))


def test_no_answer_in_time_is_a_gateway_timeout(server: OpenAIServer, make: Make) -> None:
    server.mode = "stall"
    provider = make(base_url=server.base_url)
    assert "no answer within 0.5s" in fails(
        GatewayTimeout, provider, lambda: provider.complete(HELLO)
    )
    fails(GatewayTimeout, provider, lambda: drain(provider))
    fails(GatewayTimeout, provider, provider.check)
    assert len(server.requests) == 3  # a timeout is never retried


@pytest.mark.parametrize("keepalive", [None, 0.05])
def test_a_stream_that_stops_is_a_gateway_timeout(
    server: OpenAIServer, make: Make, keepalive: float | None
) -> None:
    """Silence, or keep-alive comments without output, longer than the timeout."""
    server.mode, server.stall_after, server.keepalive = "stall_stream", 2, keepalive
    provider = make(base_url=server.base_url)
    received: list[Delta] = []
    assert "no output for 0.5s" in fails(
        GatewayTimeout, provider, lambda: read(provider, HELLO, received)
    )
    assert [d.content for d in received] == ["Hell", "o fr"]


def test_an_error_status_is_a_bad_gateway_quoting_the_body(
    server: OpenAIServer, make: Make
) -> None:
    server.mode, server.status = "error", 500
    provider = make(base_url=server.base_url)
    message = fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert "HTTP 500" in message and "model exploded" in message
    fails(BadGateway, provider, lambda: drain(provider))
    fails(BadGateway, provider, provider.check)
    server.error_body = b"x" * 5000
    message = fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert message.endswith("x" * 200 + "...")


@pytest.mark.parametrize(
    ("api_key", "says"), [("sk-bad", "api_key was refused"), (None, "no api_key")]
)
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_so(
    server: OpenAIServer, make: Make, status: int, api_key: str | None, says: str
) -> None:
    server.mode, server.status = "error", status
    server.error_body = b'{"error": {"message": "Incorrect API key provided"}}'
    provider = make(base_url=server.base_url, api_key=api_key)
    message = fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert f"HTTP {status}" in message and says in message and "Incorrect API key" in message


def test_garbage_is_a_bad_gateway(server: OpenAIServer, make: Make) -> None:
    server.mode = "garbage"
    provider = make(base_url=server.base_url)
    assert "not JSON" in fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert "502 Bad Gateway (nginx)" in fails(BadGateway, provider, lambda: drain(provider))
    assert "not JSON" in fails(BadGateway, provider, provider.check)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"object": "chat.completion"}', "no choices"),
        (b'{"choices": []}', "no choices"),
        (b'{"choices": [{"message": "hi"}]}', "no choices"),
        (b'{"error": {"message": "model not loaded"}}', "model not loaded"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_json_that_is_not_a_completion_is_a_bad_gateway(
    server: OpenAIServer, make: Make, body: bytes, says: str
) -> None:
    server.mode, server.garbage, server.garbage_type = "garbage", body, "application/json"
    provider = make(base_url=server.base_url)
    assert says in fails(BadGateway, provider, lambda: provider.complete(HELLO))


@pytest.mark.parametrize(
    ("events", "says"),
    [
        (b'data: {"error": {"message": "out of memory"}}\n\n', "out of memory"),
        (b"data: {not json\n\n", "not JSON"),
        (b'data: {"choices": [{"delta": {"content": "cut"}}]}\n\n', "ended before"),
    ],
)
def test_a_broken_event_stream_is_a_bad_gateway(
    server: OpenAIServer, make: Make, events: bytes, says: str
) -> None:
    server.mode, server.garbage, server.garbage_type = "garbage", events, "text/event-stream"
    provider = make(base_url=server.base_url)
    assert says in fails(BadGateway, provider, lambda: drain(provider))


def test_a_stream_that_ends_without_done_after_finishing_is_accepted(
    server: OpenAIServer, make: Make
) -> None:
    server.mode, server.garbage_type = "garbage", "text/event-stream"
    server.garbage = (
        b'data: {"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]}\n\n'
    )
    assert drain(make(base_url=server.base_url)) == [Delta("ok"), Delta(finish_reason="stop")]


def test_a_connection_dropped_mid_stream_is_a_bad_gateway_and_not_retried(
    server: OpenAIServer, make: Make
) -> None:
    server.mode, server.drop_after = "drop", 2
    provider = make(base_url=server.base_url)
    received: list[Delta] = []
    assert "connection lost mid-answer" in fails(
        BadGateway, provider, lambda: read(provider, HELLO, received)
    )
    assert [d.content for d in received] == ["Hell", "o fr"]
    assert len(server.requests) == 1


def test_a_body_cut_short_is_a_bad_gateway(server: OpenAIServer, make: Make) -> None:
    server.mode = "drop"
    provider = make(base_url=server.base_url)
    fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert len(server.requests) == 1


def test_a_reset_before_the_answer_is_retried_once(server: OpenAIServer, make: Make) -> None:
    provider = make(base_url=server.base_url)
    server.hangups = 1
    assert provider.complete(HELLO).content == server.text
    server.hangups = 1
    assert "".join(d.content for d in drain(provider)) == server.text
    assert len(server.requests) == 4
    server.hangups = 2
    message = fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert "connection lost before answering" in message
    assert len(server.requests) == 6


# --- check ----------------------------------------------------------------------------------


def test_check_lists_models(server: OpenAIServer, make: Make) -> None:
    make(base_url=server.base_url, model="anything").check()  # OpenAI servers: reachable is enough
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/models")]


def test_check_finds_the_ollama_model_or_says_to_pull_it(server: OpenAIServer, make: Make) -> None:
    server.models = ["llama3.2:latest", "qwen3:8b"]
    make(provider="ollama", base_url=server.base_url, model="llama3.2").check()
    make(provider="ollama", base_url=server.base_url, model="qwen3:8b").check()
    provider = make(provider="ollama", base_url=server.base_url, model="mistral")
    message = fails(ProviderUnavailable, provider, provider.check)
    assert "ollama pull mistral" in message and "qwen3:8b" in message


def test_check_waits_at_most_five_seconds(server: OpenAIServer, make: Make) -> None:
    server.mode = "stall"
    provider = make(base_url=server.base_url, timeout=600)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout, match="no answer within 5s"):
        provider.check()
    # The configured 600 s never applies to a health probe.
    assert time.monotonic() - started < 60


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "http://localhost:11434/v1"),
        ("", "http://localhost:11434/v1"),
        ("127.0.0.1:11434", "http://127.0.0.1:11434/v1"),
        ("10.0.0.5", "http://10.0.0.5:11434/v1"),
        ("http://ollama.lan:8080", "http://ollama.lan:8080/v1"),
        ("https://ollama.example.com/", "https://ollama.example.com/v1"),
        ("http://host:11434/v1", "http://host:11434/v1"),
        ("[::1]:9999", "http://[::1]:9999/v1"),
    ],
)
def test_ollama_default_url_follows_ollama_host(host: str | None, expected: str) -> None:
    env = {} if host is None else {"OLLAMA_HOST": host}
    assert default_base_url("ollama", env) == expected
    assert default_base_url("openai", env) == "https://api.openai.com/v1"


def test_base_url_defaults_and_forms(make: Make) -> None:
    assert make().base_url == "https://api.openai.com/v1"
    assert make(provider="ollama").base_url == "http://localhost:11434/v1"
    assert make(provider="ollama", env={"OLLAMA_HOST": "gpu-box"}).base_url == (
        "http://gpu-box:11434/v1"
    )
    explicit = make(provider="ollama", base_url="http://x:1/v1", env={"OLLAMA_HOST": "gpu-box"})
    assert explicit.base_url == "http://x:1/v1"
    assert make(provider="ollama", base_url="http://x:1/").base_url == "http://x:1/v1"
    assert make(base_url="http://x:1/").base_url == "http://x:1"  # OpenAI servers: as given


@pytest.mark.parametrize("base_url", ["not a url", "ftp://x/v1", "localhost:8000"])
def test_a_bad_base_url_names_the_model(make: Make, base_url: str) -> None:
    with pytest.raises(ConfigInvalid, match=r"model 'bot'.*base_url"):
        make(base_url=base_url)


def test_a_bad_ollama_host_names_the_model_and_the_variable(make: Make) -> None:
    with pytest.raises(ConfigInvalid, match=r"model 'bot'.*OLLAMA_HOST"):
        make(provider="ollama", env={"OLLAMA_HOST": "ftp://box"})


def test_create_provider_picks_by_provider(server: OpenAIServer) -> None:
    for kind in ("openai", "ollama", "lemonade"):
        model = ModelConfig(name="m", provider=kind, model="fake-model", base_url=server.base_url)
        provider = create_provider(model)
        assert isinstance(provider, OpenAICompatibleProvider)
        assert provider.provider == kind and provider.complete(HELLO).content == server.text
        provider.close()
    assert set(PROVIDERS) == {"universal", "openai", "ollama", "lemonade"}
    bad = ModelConfig(name="m", provider="openai", model="x", base_url="nope")
    with pytest.raises(ConfigInvalid, match="model 'm'"):
        create_provider(bad)


def test_streams_take_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lan:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert _env_proxy("http://gpu-box:8000/v1") == "http://proxy.lan:3128"
    assert _env_proxy("http://127.0.0.1:11434/v1") is None
    assert _env_proxy("https://api.openai.com/v1") is None  # no HTTPS_PROXY


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_is_an_error_not_followed(server: OpenAIServer, make: Make, status: int) -> None:
    """As for whole answers: a model server that moved is a 502 naming the status."""
    server.mode, server.status = "error", status
    provider = make(base_url=server.base_url)
    assert f"HTTP {status}" in fails(BadGateway, provider, lambda: drain(provider))
    assert f"HTTP {status}" in fails(BadGateway, provider, lambda: provider.complete(HELLO))
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2


class Reads:
    """A response body that comes in the given pieces, one per read."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def readany(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: a\n\ndata: b\n\n"],
        [b"data: a\r\n\r\ndata: b\r\n\r\n"],
        [b"data: a\r", b"\n\r\ndata: b\r\n"],  # CRLF split between two reads
        [b"data: a\r\rdata: b"],  # CR alone, and no line end at the end
        [b"da", b"ta: a\n", b"\ndata", b": b\n"],
    ],
)
def test_lines_end_at_lf_crlf_or_cr_across_reads(make: Make, pieces: list[bytes]) -> None:
    async def lines() -> list[str]:
        response = type("Response", (), {"content": Reads(pieces)})()
        return [line async for line in make()._lines(response) if line]

    assert asyncio.run(lines()) == ["data: a", "data: b"]


def test_a_character_split_between_two_reads_stays_whole(make: Make) -> None:
    text = "data: héllo 🦙\n".encode()
    cut = text.index("🦙".encode()) + 2

    async def lines() -> list[str]:
        response = type("Response", (), {"content": Reads([text[:cut], text[cut:]])})()
        return [line async for line in make()._lines(response)]

    assert asyncio.run(lines()) == ["data: héllo 🦙"]


def test_orjson_refusals_still_parse(make: Make) -> None:
    """NaN and a lone surrogate are not strict JSON, but servers send them (in logprobs)."""
    assert make()._decode('{"x": NaN, "y": "\\ud83d"}')["y"] == "\ud83d"


@pytest.mark.parametrize(
    ("env", "url", "proxy"),
    [
        ({"HTTP_PROXY": "proxy.lan:3128"}, "http://gpu-box:8000/v1", "http://proxy.lan:3128"),
        ({"ALL_PROXY": "http://all.lan:1"}, "https://api.openai.com/v1", "http://all.lan:1"),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "gpu-box:8000"},
            "http://gpu-box:8000/v1",
            None,
        ),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, "http://gpu-box:8000/v1", None),
    ],
)
def test_proxy_forms_read_as_httpx_reads_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, proxy: str | None
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _env_proxy(url) == proxy
