"""A fake OpenAI-compatible chat server on loopback, for tests that need real HTTP.

    from tests.chat.openai_server import OpenAIServer

    with OpenAIServer(text="Hello there", chunk_size=3) as server:
        ... point a client at server.base_url ("http://127.0.0.1:PORT/v1") ...
        assert server.requests[0].body["model"] == "llama3.2"

As a pytest fixture:

    @pytest.fixture
    def openai_server() -> Iterator[OpenAIServer]:
        with OpenAIServer() as server:
            yield server

Routes: `POST /v1/chat/completions` (whole, or SSE when the body says `"stream": true`) and
`GET /v1/models`; anything else is a 404 with an OpenAI error body.

Every knob is a plain attribute, set in the constructor or changed between requests:

- `text`: the answer. `<think>...</think>answer` is just text; `reasoning` (or None) is sent
  apart, as `reasoning_content`, the way vLLM and DeepSeek do.
- `chunk_size`: characters of `text` per stream chunk, or `pieces`: the exact chunks.
- `finish_reason` ("stop"), `usage` ((prompt, completion) tokens, or None).
- `stream_usage`: "requested" (a final usage-only chunk when the request asks with
  `stream_options.include_usage`, as OpenAI does), "always" (usage in the finish chunk, as
  llama.cpp does) or "never".
- `delay`: seconds between stream chunks; `comment`: an SSE comment line sent before every
  event (a keep-alive), or None.
- `models`: the ids `/v1/models` lists.
- `tool_calls`: tool calls every answer makes (after its `text`), each `{"name", "arguments"
  (a dict, or JSON text), "id" (optional)}`; their finish reason is "tool_calls". Streamed,
  each call comes in pieces by `index` (id and name first, then `chunk_size` characters of
  arguments at a time), the calls' pieces interleaved, as OpenAI sends them.
- `replies`: a script, a `Reply(text, tool_calls, finish_reason)` per chat request, used up
  in order; once it is empty, the answers above apply.
- `mode`, how the server (mis)behaves on every route:
  - "normal";
  - "stall": reads the request and never answers, until the server closes;
  - "stall_stream": streams `stall_after` chunks, then sends nothing but `comment` lines every
    `keepalive` seconds (or nothing, when `keepalive` is None) until the server closes;
  - "linger": a whole stream, `data: [DONE]` included, then the body stays open (nothing
    more is sent) until the server closes;
  - "drop": closes the socket mid-answer: after `drop_after` stream chunks, or halfway through
    a whole body (its Content-Length promised more);
  - "garbage": 200 with `garbage` (bytes) as `garbage_type` (text/html by default);
  - "error": `status` with `error_body` (bytes, JSON by default), and a `Location` header
    pointing at `/v2` + the path (a redirect, when `status` is one).
- `hangups`: the next N requests are read and then their connection closed without an answer
  (a pooled keep-alive connection the server had closed); then `mode` applies.

What the server saw:

- `requests`: a `Recorded(method, path, headers, body)` per request, in order; `headers` has
  lower-case keys; `body` is the decoded JSON (None without a body, a str if it is not JSON).
  `chat_bodies()`: the bodies of the chat completion requests alone.
- `chunks_sent`: content chunks written by the latest stream.
- `client_gone`: an Event set when a client closed its connection while a stream was being
  written (a write failed), i.e. the client stopped reading early.

`close()` (or leaving the `with`) releases every stalled handler, closes every connection and
joins the handler threads, so no socket or thread outlives a test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

Mode = Literal["normal", "stall", "stall_stream", "linger", "drop", "garbage", "error"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer; `finish_reason` defaults to "tool_calls" when it calls tools."""

    text: str = ""
    tool_calls: Sequence[Mapping[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Server(ThreadingHTTPServer):
    """Keeps its connections so `close()` can end handlers blocked on an idle keep-alive."""

    daemon_threads = False
    block_on_close = True
    fake: OpenAIServer

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: set[socket.socket] = set()
        self.opened = 0
        self.lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections.add(request)
            self.opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client going away is normal
            super().handle_error(request, client_address)

    def hang_up_all(self) -> None:
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class OpenAIServer:
    """See the module docstring."""

    def __init__(
        self,
        *,
        text: str = "Hello from the fake model.",
        reasoning: str | None = None,
        chunk_size: int = 4,
        pieces: Sequence[str] | None = None,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = (11, 7),
        stream_usage: Literal["requested", "always", "never"] = "requested",
        delay: float = 0.0,
        comment: str | None = None,
        models: Sequence[str] = ("fake-model",),
        tool_calls: Sequence[Mapping[str, Any]] = (),
        replies: Sequence[Reply] = (),
        mode: Mode = "normal",
        stall_after: int = 1,
        keepalive: float | None = None,
        drop_after: int = 1,
        garbage: bytes = b"<html><body>502 Bad Gateway (nginx)</body></html>",
        garbage_type: str = "text/html",
        status: int = 500,
        error_body: bytes = b'{"error": {"message": "model exploded", "type": "api_error"}}',
        hangups: int = 0,
    ) -> None:
        self.text, self.reasoning, self.chunk_size, self.pieces = (
            text,
            reasoning,
            chunk_size,
            pieces,
        )
        self.finish_reason, self.usage, self.stream_usage = finish_reason, usage, stream_usage
        self.delay, self.comment, self.models = delay, comment, list(models)
        self.tool_calls, self.replies = list(tool_calls), list(replies)
        self.mode: Mode = mode
        self.stall_after, self.keepalive, self.drop_after = stall_after, keepalive, drop_after
        self.garbage, self.garbage_type = garbage, garbage_type
        self.status, self.error_body, self.hangups = status, error_body, hangups
        self.requests: list[Recorded] = []
        self.chunks_sent = 0
        self.client_gone = threading.Event()
        self.released = threading.Event()
        self._server = _Server()
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.base_url = f"{self.url}/v1"
        # A short poll keeps shutdown() quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,))
        self._thread.start()

    def close(self) -> None:
        if self.released.is_set():
            return
        self.released.set()
        self._server.shutdown()
        self._thread.join()
        self._server.hang_up_all()
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connections_opened(self) -> int:
        """TCP connections clients have opened so far (a pooled one counts once)."""
        return self._server.opened

    def chat_bodies(self) -> list[Any]:
        """The bodies of the chat completion requests, in order."""
        return [r.body for r in self.requests if r.path.startswith("/v1/chat/completions")]

    def chunks(self, text: str | None = None) -> list[str]:
        if self.pieces is not None and text is None:
            return list(self.pieces)
        text = self.text if text is None else text
        size = max(1, self.chunk_size)
        return [text[i : i + size] for i in range(0, len(text), size)]

    def reply(self) -> Reply:
        """The next answer: the script's, or the defaults."""
        with self._server.lock:
            if self.replies:
                return self.replies.pop(0)
        return Reply(
            text=self.text,
            tool_calls=self.tool_calls,
            finish_reason=None if self.tool_calls else self.finish_reason,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like real servers
    server: _Server

    @property
    def fake(self) -> OpenAIServer:
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(None)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._serve(body)

    def _serve(self, body: Any) -> None:
        fake = self.fake
        headers = {key.lower(): value for key, value in self.headers.items()}
        fake.requests.append(Recorded(self.command, self.path, headers, body))
        if fake.hangups > 0:
            fake.hangups -= 1
            self.close_connection = True
            return
        try:
            self._answer(body)
        except (BrokenPipeError, ConnectionResetError):
            fake.client_gone.set()
            self.close_connection = True

    def _answer(self, body: Any) -> None:
        fake = self.fake
        mode = fake.mode
        if mode == "stall":
            fake.released.wait()
            self.close_connection = True
            return
        if mode == "garbage":
            self._send(200, fake.garbage, fake.garbage_type)
            return
        if mode == "error":
            self._send(fake.status, fake.error_body, "application/json", location=True)
            return
        route = (self.command, self.path.split("?")[0])
        if route == ("GET", "/v1/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        elif route == ("POST", "/v1/chat/completions") and isinstance(body, dict):
            if body.get("stream"):
                self._stream(body)
            else:
                self._send_json(200, self._completion(body))
        else:
            error = {"message": f"no route {self.command} {self.path}", "type": "not_found_error"}
            self._send_json(404, {"error": error})

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        fake = self.fake
        reply = fake.reply()
        calls = _calls(reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if not calls:
            message["content"] = reply.text
        else:
            message["tool_calls"] = calls
        if fake.reasoning is not None:
            message["reasoning_content"] = fake.reasoning
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        }
        if fake.usage is not None:
            answer["usage"] = _usage(fake.usage)
        return answer

    def _stream(self, body: dict[str, Any]) -> None:
        fake = self.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        fake.chunks_sent = 0

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [choice] if delta is not None else [],
                **extra,
            }
            self._event(json.dumps(event))

        chunk({"role": "assistant", "content": ""})
        reply = fake.reply()
        text = None if reply.text == fake.text else reply.text
        pieces: list[dict[str, Any]] = (
            [{"reasoning_content": fake.reasoning}] if fake.reasoning else []
        )
        pieces += [{"content": piece} for piece in fake.chunks(text)]
        pieces += [{"tool_calls": [piece]} for piece in self._call_pieces(_calls(reply))]
        for index, delta in enumerate(pieces):
            if fake.mode == "drop" and index == fake.drop_after:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk: a cut body
                return
            if fake.mode == "stall_stream" and index == fake.stall_after:
                self._stall()
                return
            if index and fake.delay and fake.released.wait(fake.delay):
                self.close_connection = True
                return
            chunk(delta)
            fake.chunks_sent += 1
        requested = (body.get("stream_options") or {}).get("include_usage")
        usage = fake.usage
        if usage is not None and fake.stream_usage == "always":
            chunk({}, _finish(reply), usage=_usage(usage))
        else:
            chunk({}, _finish(reply))
        if usage is not None and fake.stream_usage == "requested" and requested:
            chunk(None, usage=_usage(usage))
        self._event("[DONE]")
        if fake.mode == "linger":
            fake.released.wait()
            self.close_connection = True
            return
        self._write_chunk(b"")

    def _call_pieces(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each call's first piece (index, id, name), then its arguments a few characters at
        a time, the calls taking turns."""
        heads = [
            {
                "index": i,
                "id": c["id"],
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": ""},
            }
            for i, c in enumerate(calls)
        ]
        tails = [self.fake.chunks(c["function"]["arguments"]) for c in calls]
        pieces = list(heads)
        for turn in range(max((len(t) for t in tails), default=0)):
            pieces += [
                {"index": i, "function": {"arguments": tail[turn]}}
                for i, tail in enumerate(tails)
                if turn < len(tail)
            ]
        return pieces

    def _stall(self) -> None:
        fake = self.fake
        while not fake.released.wait(fake.keepalive or 3600):
            self._write_chunk(f": {fake.comment or 'keep-alive'}\n\n".encode())
        self.close_connection = True

    def _event(self, data: str) -> None:
        comment = f": {self.fake.comment}\n\n" if self.fake.comment else ""
        self._write_chunk(f"{comment}data: {data}\n\n".encode())

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, answer: Any) -> None:
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(
        self, status: int, payload: bytes, content_type: str, *, location: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if location:
            self.send_header("Location", f"/v2{self.path}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.fake.mode == "drop":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)
        self.wfile.flush()


def _calls(reply: Reply) -> list[dict[str, Any]]:
    """A reply's tool calls in OpenAI's shape."""
    calls = []
    for i, call in enumerate(reply.tool_calls):
        arguments = call.get("arguments", {})
        calls.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return calls


def _finish(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
