"""Server-sent events: the one writer of every streamed response (chat, model downloads).

A stream is an async generator of batches, each `(events, done)`: the events of a batch go out
as `data: <json>` frames in one write (each write costs more than a frame, so a burst is one
write), and a batch with `done` ends the body with OpenAI's `data: [DONE]` in that same write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"

Batch = tuple[Sequence[Any], bool]
"""Events to send in one write, and whether `[DONE]` follows them and ends the body."""


def frame(event: Any) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def encode(batch: Batch) -> bytes:
    events, done = batch
    body = b"".join([frame(event) for event in events])
    return body + DONE if done else body


async def one_by_one(events: AsyncGenerator[Any, None]) -> AsyncGenerator[Batch, None]:
    """Each event a batch of its own (for streams whose events come seconds apart)."""
    async with contextlib.aclosing(events):
        async for event in events:
            yield (event,), False


class EventStream(StreamingResponse):
    """An SSE response of a generator's batches. Starlette's StreamingResponse sends the first
    frame from a task it starts (a loop iteration of other streams' work later, under load),
    sends the end of the body as a write of its own, and leaves a generator whose client went
    away mid `send` suspended, to be finalised by the garbage collector whenever that comes,
    holding the model and the session until then. Here the start and the first frame go out
    from the request's own task, the batch with `[DONE]` ends the body, a task of its own
    watches for the client going away, and the generator is closed however the response
    ends."""

    media_type = "text/event-stream"

    def __init__(
        self, batches: AsyncGenerator[Batch, None], headers: Mapping[str, str] | None = None
    ) -> None:
        # StreamingResponse's own __init__ takes a body of bytes; this one writes batches.
        self.batches = batches
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # The generator is started first: from then on its cleanup runs however this ends
            # (one closed before it began would never give the provider or the session back).
            first = await anext(self.batches)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            with anyio.CancelScope() as streaming:
                watch = asyncio.create_task(self._watch(receive, streaming))
                try:
                    ended = await _body(send, first)
                    async for batch in self.batches:
                        ended = await _body(send, batch)
                    if not ended:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    watch.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.batches.aclose()

    async def _watch(self, receive: Receive, streaming: anyio.CancelScope) -> None:
        """Cancels the streaming when the client goes away (the write may never fail)."""
        with contextlib.suppress(Exception):  # a receive that fails: as good as gone
            await self.listen_for_disconnect(receive)
        streaming.cancel()


async def _body(send: Send, batch: Batch) -> bool:
    """Sends `batch`; the one with `[DONE]` ends the body (True)."""
    done = batch[1]
    await send({"type": "http.response.body", "body": encode(batch), "more_body": not done})
    return done
