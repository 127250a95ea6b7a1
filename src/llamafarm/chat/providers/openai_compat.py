"""Chat through an OpenAI-compatible server: OpenAI, vLLM, llama.cpp, LM Studio, Ollama's `/v1`,
Lemonade.

Whole answers and checks are read with httpx (blocking, on the caller's thread), streams with
aiohttp on the event loop (its C parser costs a third of httpx's CPU per streamed answer,
measured with bench/chat.py); both honour HTTP(S)_PROXY and NO_PROXY. Every failure of the
server is translated here, the one place either enters:

    refused, unknown host                       -> ProviderUnavailable (503)
    no connection in 5 s, no answer or no new
    output within `timeout`                     -> GatewayTimeout (504)
    an error status, a body that is not the
    protocol, a connection dropped mid-answer   -> BadGateway (502)

Each message names the provider, the model and the base URL.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import time
import urllib.request
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing, closing
from types import TracebackType
from typing import Any

import aiohttp
import httpx
import orjson

from llamafarm.chat.providers import wire
from llamafarm.chat.providers.base import (
    Completion,
    Delta,
    FinishReason,
    Generation,
    Usage,
)
from llamafarm.chat.providers.streams import POOL, Streams
from llamafarm.config.models import ModelConfig
from llamafarm.errors import BadGateway, ConfigInvalid, GatewayTimeout, LfError, ProviderUnavailable
from llamafarm.http import (
    CHECK_TIMEOUT,
    asend_once_more,
    connect_timeout,
    excerpt,
    normalize_url,
    send_once_more,
    timeouts,
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_TOKENS = 512
"""A generation's `max_tokens` when the request sets none (a server's own may be unbounded)."""
"""Seconds to wait for the first byte of an answer, and between two pieces of a stream."""
DRAIN = 0.25
"""Seconds a stream's body may go on after `data: [DONE]` (read once the last delta is out)
before the connection is dropped instead of going back to the pool."""
OPENAI_URL = "https://api.openai.com/v1"
STREAM_HEADERS = {"Accept": "text/event-stream", "Content-Type": "application/json"}
OLLAMA_HOST = "http://localhost:11434"
OLLAMA_PORT = 11434
LEMONADE_HOST = "127.0.0.1"
LEMONADE_PORT = 11534
LEMONADE_KEY = "lemonade"
"""Lemonade's defaults, as LlamaFarm has them: its server asks for a key but takes any."""


def default_base_url(provider: str, env: Mapping[str, str]) -> str:
    """Where a provider listens when the config names no `base_url`: OpenAI's API, or Ollama
    at `$OLLAMA_HOST` (read as the ollama CLI reads it: scheme and port optional) + `/v1`."""
    if provider != "ollama":
        return OPENAI_URL
    host = (env.get("OLLAMA_HOST") or "").strip().rstrip("/") or OLLAMA_HOST
    if "://" not in host:
        authority, slash, rest = host.partition("/")
        if not authority.rsplit("]", 1)[-1].count(":"):  # no port (an IPv6 literal has colons)
            authority = f"{authority}:{OLLAMA_PORT}"
        host = f"http://{authority}{slash}{rest}"
    return f"{host.removesuffix('/v1')}/v1"


class OpenAICompatibleProvider:
    """One chat model behind `POST {base_url}/chat/completions`, whole or streamed (SSE).

    Fails fast: a request is retried once only when a pooled connection was reset before any
    byte of the answer came back; never after output has begun.
    """

    def __init__(
        self,
        model: ModelConfig,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        streams: Streams | None = None,
    ) -> None:
        if model.provider not in ("openai", "ollama", "lemonade"):
            raise ConfigInvalid(f"model {model.name!r}: provider {model.provider!r} is not OpenAI")
        self.config = model
        self.provider = model.provider
        self.model = model.model
        self.timeout = model.timeout if timeout is None else timeout
        self.base_url = self._base_url(model, os.environ if env is None else env)
        # api.openai.com rejects unknown fields; vLLM, llama.cpp and LM Studio honour top_k and
        # Ollama's /v1 ignores it.
        self.sends_top_k = httpx.URL(self.base_url).host != "api.openai.com"
        key = model.api_key or (LEMONADE_KEY if model.provider == "lemonade" else None)
        headers = {"Authorization": f"Bearer {key}"} if key else None
        # One client per model: its connection pool serves every request and thread.
        self._client = httpx.Client(headers=headers, timeout=self._limits(self.timeout))
        self._stream_headers = {**STREAM_HEADERS, **(headers or {})}
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.timeout,  # a free connection and the connection itself
            sock_connect=connect_timeout(self.timeout),
            sock_read=self.timeout,
        )
        self._proxy = _env_proxy(self.base_url)
        # The owner's sessions (the model cache's), or this provider's own: its caller closes them.
        self.streams = Streams() if streams is None else streams

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def supports_tools(self) -> bool:
        """OpenAI-compatible servers take `tools`; one whose model cannot use them ignores
        them or answers an error (vLLM without a tool parser), which the client sees."""
        return True

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the protocol ---------------------------------------------------------------------

    def complete(self, generation: Generation) -> Completion:
        payload = self.payload(generation, stream=False)
        with closing(
            self._send("POST", "/chat/completions", payload, timeout=self.timeout)
        ) as response:
            self._raise_for_status(response)
            text = self._read(response)
        return self._completion(self._decode(text))

    def check(self) -> None:
        """The server answers `GET /models` (and, for Ollama, lists the model) within 5 s."""
        timeout = min(self.timeout, CHECK_TIMEOUT)
        with closing(self._send("GET", "/models", None, timeout=timeout)) as response:
            self._raise_for_status(response)
            body = self._decode(self._read(response))
        try:
            served = [str(entry["id"]) for entry in body["data"]]
        except (KeyError, TypeError) as exc:
            raise self._fail(
                BadGateway, f"/models is not a model list: {excerpt(json.dumps(body))}"
            ) from exc
        if self.provider == "ollama" and not {self.model, f"{self.model}:latest"} & set(served):
            raise self._fail(
                ProviderUnavailable,
                f"the model is not pulled (run `ollama pull {self.model}`); "
                f"available: {', '.join(served) or 'none'}",
            )

    # --- requests -------------------------------------------------------------------------

    def payload(self, generation: Generation, *, stream: bool) -> dict[str, Any]:
        """The request body: `extra` first, then every value the generation sets."""
        body: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
        body.update(generation.extra)
        if not stream:
            body.pop("stream_options", None)  # OpenAI rejects it on a request that does not stream
        body.update(
            model=self.model,
            messages=[wire.message_json(m) for m in generation.messages],
            stream=stream,
        )
        if generation.tools:
            body["tools"] = [dict(tool) for tool in generation.tools]
            if generation.tool_choice is not None:
                body["tool_choice"] = generation.tool_choice
        knobs: dict[str, object] = {
            "max_tokens": generation.max_tokens or DEFAULT_MAX_TOKENS,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "top_k": generation.top_k if self.sends_top_k else None,
        }
        body.update({key: value for key, value in knobs.items() if value is not None})
        body.update(generation.output())
        return body

    def _send(
        self, method: str, path: str, payload: dict[str, Any] | None, *, timeout: float
    ) -> httpx.Response:
        """The response with its headers read and its body still to come (close it)."""
        request = self._client.build_request(
            method, f"{self.base_url}{path}", json=payload, timeout=self._limits(timeout)
        )
        return send_once_more(
            lambda: self._client.send(request, stream=True),
            fail=lambda exc: self._failure(exc, timeout=timeout, started=False),
        )

    def _read(self, response: httpx.Response) -> str:
        try:
            response.read()
        except httpx.HTTPError as exc:
            raise self._failure(exc, timeout=self.timeout, started=True) from exc
        return response.text

    def _raise_for_status(self, response: httpx.Response) -> None:
        if not response.is_success:
            self._raise_for_status_text(response.status_code, self._read(response))

    def _raise_for_status_text(self, status: int, text: str) -> None:
        body = excerpt(text)
        if status in (401, 403):
            key = "the api_key was refused" if self.config.api_key else "no api_key is configured"
            raise self._fail(BadGateway, f"HTTP {status}: {key}: {body}")
        raise self._fail(BadGateway, f"HTTP {status}: {body}")

    # --- answers --------------------------------------------------------------------------

    async def stream(self, generation: Generation) -> AsyncGenerator[Delta, None]:
        """Deltas as the server sends them, read on the event loop (no thread per stream).
        Closing the iterator early closes the connection: the server sees the client go
        and stops generating."""
        payload = self.payload(generation, stream=True)
        response = await self._asend("/chat/completions", payload)
        finished = False
        try:
            if not 200 <= response.status < 300:  # redirects are not followed, as httpx's
                self._raise_for_status_text(response.status, await self._aread(response))
            if response.content_type == "application/json":
                for delta in self._whole(self._decode(await self._aread(response))):
                    yield delta
                finished = True
                return
            answer = _Answer(self)
            async with aclosing(self._lines(response)) as lines:
                async for line in lines:
                    piece = answer.feed(line)
                    if piece is not None:
                        yield piece
                    if answer.done:
                        break
            for delta in answer.end():
                yield delta
            finished = answer.done and await _drain(response)
        finally:
            # A connection whose answer was not read to its end is dropped, never pooled.
            if finished:
                response.release()
            else:
                response.close()

    def _whole(self, body: dict[str, Any]) -> Iterator[Delta]:
        """A server that ignores `stream: true` answers with the whole completion."""
        whole = self._completion(body)
        if whole.content:
            yield Delta(content=whole.content)
        yield Delta(
            finish_reason=whole.finish_reason, usage=whole.usage, tool_calls=whole.tool_calls
        )

    async def _asend(self, path: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """The response with its headers read (release or close it)."""
        session = self.streams.session()
        body = orjson.dumps(payload)
        return await asend_once_more(
            lambda: session.post(
                f"{self.base_url}{path}",
                data=body,
                headers=self._stream_headers,
                proxy=self._proxy,
                timeout=self._stream_timeout,
                allow_redirects=False,
            ),
            errors=(aiohttp.ClientError, TimeoutError),
            reset=_reset,
            fail=self._unsent,
        )

    def _unsent(self, exc: Exception) -> LfError:
        assert isinstance(exc, aiohttp.ClientError | TimeoutError)  # the errors _asend names
        return self._failure(exc, timeout=self.timeout, started=False)

    async def _lines(self, response: aiohttp.ClientResponse) -> AsyncGenerator[str, None]:
        """The body's lines as they come (LF, CRLF or CR ends a line, as SSE allows; a CRLF
        split across two reads adds an empty line, which changes nothing here: each data
        line is read on its own)."""
        rest = ""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                data = await response.content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failure(exc, timeout=self.timeout, started=True) from exc
            if not data:
                break
            text = rest + decoder.decode(data)
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            *lines, rest = text.split("\n")
            for line in lines:
                yield line
        rest += decoder.decode(b"", final=True)
        if rest:
            yield rest

    async def _aread(self, response: aiohttp.ClientResponse) -> str:
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failure(exc, timeout=self.timeout, started=True) from exc
        return data.decode("utf-8", "replace")

    def _completion(self, body: dict[str, Any]) -> Completion:
        try:
            choice = body["choices"][0]
            message = choice["message"]
            if not isinstance(message, dict):
                raise TypeError(message)
            content, reasoning = _text(message), _text(message, "reasoning_content", "reasoning")
        except (KeyError, IndexError, TypeError) as exc:
            detail = _error_text(body) if body.get("error") else excerpt(json.dumps(body))
            raise self._fail(BadGateway, f"no choices in the answer: {detail}") from exc
        try:
            calls = wire.tool_calls(message)
        except ValueError as exc:
            raise self._fail(BadGateway, str(exc)) from exc
        if reasoning:
            content = f"<think>{reasoning}</think>{content}"
        return Completion(
            content=content,
            finish_reason=wire.finish(choice.get("finish_reason"), tool_calls=bool(calls)),
            usage=_usage(body.get("usage")),
            tool_calls=calls,
        )

    def _decode(self, text: str) -> dict[str, Any]:
        try:
            body = orjson.loads(text)
        except ValueError:
            try:  # what orjson refuses and json takes: NaN, Infinity, lone surrogates
                body = json.loads(text)
            except ValueError as exc:
                raise self._fail(BadGateway, f"not JSON: {excerpt(text)!r}") from exc
        if not isinstance(body, dict):
            raise self._fail(BadGateway, f"not a JSON object: {excerpt(text)!r}")
        return body

    # --- errors ---------------------------------------------------------------------------

    def _fail(self, kind: type[LfError], cause: str) -> LfError:
        return kind(f"{self.provider} model {self.model!r} at {self.base_url}: {cause}")

    def _failure(
        self,
        exc: httpx.HTTPError | aiohttp.ClientError | TimeoutError,
        *,
        timeout: float,
        started: bool,
    ) -> LfError:
        """An error of httpx (whole answers) or aiohttp (streams) as ours; `started` once the
        answer's headers have come."""
        if isinstance(exc, httpx.ConnectTimeout):
            return self._fail(
                GatewayTimeout, f"could not connect within {connect_timeout(timeout):g}s"
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # also a wait for a free connection
            return self._fail(
                GatewayTimeout,
                f"could not connect within {connect_timeout(timeout):g}s "
                f"(or all {POOL} connections to it were busy for {timeout:g}s)",
            )
        if isinstance(exc, httpx.PoolTimeout):
            return self._fail(GatewayTimeout, f"no free connection within {timeout:g}s")
        if isinstance(exc, httpx.TimeoutException | TimeoutError):  # aiohttp's read timeout
            waited = "no output for" if started else "no answer within"
            return self._fail(GatewayTimeout, f"{waited} {timeout:g}s")
        if isinstance(exc, httpx.ConnectError | aiohttp.ClientConnectorError):
            hint = " (is `ollama serve` running?)" if self.provider == "ollama" else ""
            return self._fail(ProviderUnavailable, f"cannot connect: {exc}{hint}")
        if isinstance(
            exc,
            httpx.RemoteProtocolError
            | httpx.ReadError
            | httpx.WriteError
            | aiohttp.ClientPayloadError
            | aiohttp.ServerDisconnectedError
            | aiohttp.ClientOSError,
        ):
            where = "mid-answer" if started else "before answering"
            return self._fail(BadGateway, f"connection lost {where}: {exc}")
        return self._fail(BadGateway, f"{type(exc).__name__}: {exc}")

    # --- config ---------------------------------------------------------------------------

    @staticmethod
    def _base_url(model: ModelConfig, env: Mapping[str, str]) -> str:
        value = model.base_url or default_base_url(model.provider, env)
        if model.provider == "lemonade" and not model.base_url:
            lemonade = model.lemonade
            host = (lemonade.host if lemonade else None) or LEMONADE_HOST
            port = (lemonade.port if lemonade else None) or LEMONADE_PORT
            value = f"http://{host}:{port}/api/v1"
        defaults = {"ollama": "OLLAMA_HOST", "lemonade": "lemonade.host/port"}
        source = "base_url" if model.base_url else defaults.get(model.provider, "default")
        try:
            url = normalize_url(value, what=f"model {model.name!r}")
        except ConfigInvalid as exc:
            raise ConfigInvalid(f"{exc.detail} ({source})") from exc
        if model.provider == "ollama" and httpx.URL(url).path in ("", "/"):
            url = (
                url.rstrip("/") + "/v1"
            )  # Ollama's OpenAI-compatible API; its root is the native one
        return url

    @staticmethod
    def _limits(timeout: float) -> httpx.Timeout:
        return timeouts(timeout)


class _Answer:
    """One streamed answer being read: SSE lines in, deltas out."""

    def __init__(self, provider: OpenAICompatibleProvider) -> None:
        self.provider = provider
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.thinking = False
        self.done = False
        self.stray = ""
        self.last = time.monotonic()
        self.tool_calls = wire.ToolCallPieces()

    def feed(self, line: str) -> Delta | None:
        provider = self.provider
        field, _, value = line.partition(":")
        if not line or not field:  # an event boundary or a comment (a keep-alive)
            if time.monotonic() - self.last > provider.timeout:
                raise provider._fail(GatewayTimeout, f"no output for {provider.timeout:g}s")
            return None
        if field != "data":
            if field not in ("event", "id", "retry"):
                self.stray = self.stray or line
            return None
        self.last = time.monotonic()
        value = value.removeprefix(" ")
        if value.strip() == "[DONE]":
            self.done = True
            return None
        chunk = provider._decode(value)
        if chunk.get("error"):
            raise provider._fail(BadGateway, f"error in the stream: {_error_text(chunk)}")
        self.usage = _usage(chunk.get("usage")) or self.usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return None  # e.g. the final usage-only chunk
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        reasoning, content = _text(delta, "reasoning_content", "reasoning"), _text(delta)
        text = ""
        if reasoning:
            text, self.thinking = ("" if self.thinking else "<think>") + reasoning, True
        if content:
            text, self.thinking = text + ("</think>" if self.thinking else "") + content, False
        self.tool_calls.feed(delta.get("tool_calls"))
        if choice.get("finish_reason"):
            self.finish = wire.finish(choice["finish_reason"])
        return Delta(content=text) if text else None

    def end(self) -> list[Delta]:
        if not self.done and self.finish is None:
            seen = f"; it sent {excerpt(self.stray)!r}" if self.stray else ""
            raise self.provider._fail(
                BadGateway, f"the stream ended before the answer was finished{seen}"
            )
        closing = [Delta(content="</think>")] if self.thinking else []
        calls = self.tool_calls.calls()
        finish = wire.finish(self.finish, tool_calls=bool(calls))
        return [*closing, Delta(finish_reason=finish, usage=self.usage, tool_calls=calls)]


async def _drain(response: aiohttp.ClientResponse) -> bool:
    """Read what follows `[DONE]` (servers end the body right there) so that the connection
    can go back to the pool: False when the body goes on for more than DRAIN seconds."""
    try:
        async with asyncio.timeout(DRAIN):
            while await response.content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        return False
    return True


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, read as httpx reads it: HTTP_PROXY,
    HTTPS_PROXY or ALL_PROXY (lower case first; `http://` when no scheme is given) unless
    NO_PROXY matches the host or host:port. Read once per provider (aiohttp's trust_env reads
    the environment and ~/.netrc on every request)."""
    parsed = httpx.URL(url)
    netloc = parsed.netloc.decode("ascii")
    if urllib.request.proxy_bypass(netloc):  # on POSIX: NO_PROXY, with or without a port
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    return proxy or None


def _reset(exc: Exception) -> bool:
    """A pooled connection the server had closed or reset: one more try on a new one. No
    connection at all (`ClientConnectorError`, an `OSError` too) is not retried."""
    return isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
    ) and not isinstance(exc, aiohttp.ClientConnectorError)


def _text(message: dict[str, Any], *keys: str) -> str:
    """The first string among `keys` (default: `content`); null and absent are ""."""
    for key in keys or ("content",):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _error_text(body: dict[str, Any]) -> str:
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return excerpt(str(message if message is not None else json.dumps(body)))
