"""Reject encoded slashes in project URLs before routing decodes them into separators."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

GUARDED_PREFIX = b"/v1/projects/"


class EncodedSlashGuard:
    """`/v1/projects/%2Fetc` would route as `/v1/projects//etc`; answer 400 instead.

    Names under /v1/projects are single path segments, so an encoded '/' or '\\' in one is
    always a client error, never a different route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = (scope.get("raw_path") or scope["path"].encode()).lower()
            if raw.startswith(GUARDED_PREFIX) and (b"%2f" in raw or b"%5c" in raw):
                response = JSONResponse(
                    {"detail": "Names in the URL may not contain '/' or '\\'"}, status_code=400
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
