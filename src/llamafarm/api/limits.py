"""Refuse request bodies over the upload limit, from Content-Length or while they stream in."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_SLACK = 1 << 20
"""Room for multipart headers and boundaries around the file itself."""


class BodySizeLimit:
    """413 for bodies over the limit, without reading them whole first.

    A declared Content-Length is judged before the app runs. A chunked body is counted as it
    arrives: past the limit the app sees the client leave, and whatever it answers is replaced
    by the 413, so a request without Content-Length cannot fill the disk with its spool file.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes + MULTIPART_SLACK
        self.response = JSONResponse(
            {"detail": f"Request body is larger than the {max_bytes >> 20} MiB limit"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self.response(scope, receive, send)
            return

        received, too_large, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if too_large:
                    await self.response({"type": "http"}, counted, send)
                    return
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self.response(scope, counted, send)
