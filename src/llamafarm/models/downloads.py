"""Following downloads from the event loop: a download's events come from a blocking generator
that waits long between them, so a thread of the server's download pool reads it and hands each
event to the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llamafarm.errors import LfError

Event = dict[str, Any]


class Downloads:
    """The threads that follow downloads, apart from the server's default pool (they wait
    long); built once with the app and closed with it."""

    def __init__(self, *, threads: int = 16) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lf-models")

    def close(self) -> None:
        """Takes no new downloads to follow; those followed stop with their clients."""
        self.pool.shutdown(wait=False)

    async def follow(
        self, model_name: str, events: Generator[Event, None, None]
    ) -> AsyncGenerator[Event, None]:
        """The events as they come, failures as an `error` event. When the consumer stops,
        the thread stops reading at the next event; the download itself runs on."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for event in events:
                    if stop.is_set():
                        break
                    put(event)
            except LfError as exc:
                put({"event": "error", "message": exc.detail})
            except Exception as exc:  # the stream has begun: report it, then end the stream
                message = f"Downloading {model_name!r} failed: {type(exc).__name__}: {exc}"
                put({"event": "error", "message": message})
            finally:
                try:
                    events.close()
                finally:
                    put(None)

        loop.run_in_executor(self.pool, pump)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            stop.set()
