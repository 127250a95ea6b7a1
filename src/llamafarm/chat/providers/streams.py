"""The aiohttp sessions that OpenAI-compatible providers stream through, one per event loop.

A session's connections belong to the event loop that opened them, so there is one per loop;
every provider of a process shares them (each request brings its provider's headers, timeouts
and proxy), so a provider the model cache lets go holds nothing that needs closing. The app's
lifespan makes one `Streams` for its `ChatModelCache` and closes it when the server stops; a
provider made on its own makes its own, which its caller closes.
"""

from __future__ import annotations

import asyncio
import functools
import ssl

import aiohttp
import certifi

POOL = 100
"""Connections kept per model server, as httpx keeps them."""


class Streams:
    """The streaming sessions of one owner, by event loop."""

    def __init__(self) -> None:
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def session(self) -> aiohttp.ClientSession:
        """The running event loop's session, opened on first use (or after it was closed)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0,  # per server, not in all: one model's streams never wait for another's
                    limit_per_host=POOL,
                    ssl=_certificates(),
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[loop] = session
        return session

    async def close(self) -> None:
        """Close the running event loop's session and its connections (a session belongs to
        its loop: it is closed there)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


@functools.cache
def _certificates() -> ssl.SSLContext:
    """certifi's authorities, as httpx trusts them (read once: loading them takes ~30 ms)."""
    return ssl.create_default_context(cafile=certifi.where())
