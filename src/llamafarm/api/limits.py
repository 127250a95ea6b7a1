"""Refuse request bodies over the upload limit from their Content-Length, before reading them."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MULTIPART_SLACK = 1 << 20
"""Room for multipart headers and boundaries around the file itself."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_bytes + MULTIPART_SLACK:
                limit = self.max_bytes >> 20
                response = JSONResponse(
                    {"detail": f"Request body is larger than the {limit} MiB limit"},
                    status_code=413,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
