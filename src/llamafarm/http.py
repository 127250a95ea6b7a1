"""What every client of a remote service shares: URL checks, timeouts, one retry, JSON answers.

Used by the remote embedders and rerankers (`post_json`, `json_body`) and the OpenAI-compatible
chat provider (`send_once_more`, `asend_once_more`, `normalize_url`, the timeouts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from llamafarm.errors import ConfigInvalid, LfError

CHECK_TIMEOUT = 5.0
"""Seconds a health check waits at most, whatever the configured timeout."""
CONNECT_TIMEOUT = 5.0
EXCERPT = 200
"""Characters of a bad response body quoted in an error."""

RESET = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""What a pooled keep-alive connection the server had closed raises: worth one more try."""

T = TypeVar("T")


def normalize_url(value: str, *, what: str) -> str:
    """An absolute http(s) URL without a trailing slash; ConfigInvalid otherwise."""
    try:
        url = httpx.URL(value.strip().rstrip("/"))
    except httpx.InvalidURL as exc:
        raise ConfigInvalid(f"{what} config: base_url: {exc}") from exc
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigInvalid(f"{what} config: base_url: {value!r} is not an http(s) URL")
    return str(url)


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT] + "..."


def connect_timeout(timeout: float) -> float:
    return min(CONNECT_TIMEOUT, timeout)


def timeouts(timeout: float) -> httpx.Timeout:
    """`timeout` for every phase, connecting within CONNECT_TIMEOUT at most."""
    return httpx.Timeout(timeout, connect=connect_timeout(timeout))


def send_once_more(send: Callable[[], T], *, fail: Callable[[httpx.HTTPError], LfError]) -> T:
    """`send()`, tried once more only when the connection was reset (`RESET`), so a dead
    service costs one timeout; every other transport failure, or a second reset, is `fail`."""
    for attempt in (1, 2):
        try:
            return send()
        except RESET as exc:
            if attempt == 2:
                raise fail(exc) from exc
        except httpx.HTTPError as exc:
            raise fail(exc) from exc
    raise AssertionError("unreachable")


async def asend_once_more(
    send: Callable[[], Awaitable[T]],
    *,
    errors: tuple[type[Exception], ...],
    reset: Callable[[Exception], bool],
    fail: Callable[[Exception], LfError],
) -> T:
    """`send_once_more` for an async client (aiohttp): `errors` are its transport failures,
    `reset(exc)` says which of them is a pooled connection the server had closed."""
    for attempt in (1, 2):
        try:
            return await send()
        except errors as exc:
            if attempt == 2 or not reset(exc):
                raise fail(exc) from exc
    raise AssertionError("unreachable")


def post_json(
    client: httpx.Client,
    url: str,
    payload: Any,
    *,
    timeout: float,
    fail: Callable[[str], LfError],
) -> httpx.Response:
    """POST JSON with a bounded wait, retried once only when a pooled connection was reset;
    every transport failure becomes `fail(reason)`."""
    limits = timeouts(timeout)

    def reason(exc: httpx.HTTPError) -> LfError:
        if isinstance(exc, RESET):
            return fail(f"connection lost: {exc!r}")
        if isinstance(exc, httpx.ConnectTimeout):
            return fail(f"could not connect within {limits.connect:g}s")
        if isinstance(exc, httpx.TimeoutException):
            return fail(f"no answer within {timeout:g}s")
        if isinstance(exc, httpx.ConnectError):
            return fail(f"cannot connect: {exc}")
        return fail(f"{type(exc).__name__}: {exc}")

    return send_once_more(lambda: client.post(url, json=payload, timeout=limits), fail=reason)


def json_body(response: httpx.Response, *, fail: Callable[[str], LfError]) -> Any:
    """A service's JSON answer; an error status or a body that is not JSON is `fail(reason)`."""
    if not response.is_success:
        raise fail(f"HTTP {response.status_code}: {excerpt(response.text)}")
    try:
        return response.json()
    except ValueError as exc:
        raise fail(f"malformed JSON: {excerpt(response.text)!r}") from exc
