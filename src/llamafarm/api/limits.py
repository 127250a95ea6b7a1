"""Refuse request bodies over their limits, from Content-Length or while they stream in.

Uploads (multipart bodies, and `/mcp`, whose tools carry uploads base64-encoded) may be as large
as the upload limit; every other body is JSON and gets a much smaller limit, and JSON nested
deeper than `MAX_DEPTH` levels is refused before any parser or validator recurses into it
(Python's `json` and the YAML writer of project configs raise RecursionError a few hundred
levels down). Each refusal is a 413 or 422 `{"detail"}`, in time linear in the capped body.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_SLACK = 1 << 20
"""Room for multipart headers and boundaries around the file itself."""

MAX_DEPTH = 64
"""Nesting of a JSON body: a project config is ~10 levels deep, filters at most 2 x 8."""

UPLOAD_PATHS = frozenset({"/mcp"})
"""Paths whose non-multipart bodies may carry uploads (and which enforce their own limit)."""

_OPENING = (b"[", b"{")


class BodySizeLimit:
    """413 for bodies over their limit, without reading an upload whole first.

    A declared Content-Length is judged before the app runs. A chunked upload is counted as it
    arrives: past the limit the app sees the client leave, and whatever it answers is replaced
    by the 413, so a request without Content-Length cannot fill the disk with its spool file.
    A JSON body is read whole (it is parsed whole anyway), judged, then handed to the app.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes + MULTIPART_SLACK
        self.max_json_bytes = max_json_bytes
        self.response = JSONResponse(
            {"detail": f"Request body is larger than the {max_bytes >> 20} MiB limit"},
            status_code=413,
        )
        self.json_response = JSONResponse(
            {
                "detail": f"Request body is larger than the {max_json_bytes >> 10} KiB limit "
                "for JSON bodies (LF_MAX_JSON_KB); files go through the upload routes"
            },
            status_code=413,
        )
        self.deep_response = JSONResponse(
            {"detail": f"Request body nests JSON deeper than {MAX_DEPTH} levels"},
            status_code=422,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"")
        upload = content_type.startswith(b"multipart/") or scope["path"] in UPLOAD_PATHS
        limit = self.max_bytes if upload else self.max_json_bytes
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await (self.response if upload else self.json_response)(scope, receive, send)
        elif upload:
            await self._streamed(scope, receive, send)
        else:
            await self._whole(scope, receive, send, json=_is_json(content_type))

    async def _whole(self, scope: Scope, receive: Receive, send: Send, *, json: bool) -> None:
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_json_bytes:
                await self.json_response(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json and _too_deep(body):
            await self.deep_response(scope, receive, send)
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
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


def _is_json(content_type: bytes) -> bool:
    """Whether FastAPI would parse the body as JSON (it also does when no type is given)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return not media or media == b"application/json" or media.endswith(b"+json")


def _too_deep(body: bytes) -> bool:
    # Counting brackets is a memchr-speed pass; only a body with more of them than MAX_DEPTH
    # (a long chat, a large config) is parsed to measure its depth.
    if sum(body.count(b) for b in _OPENING) <= MAX_DEPTH:
        return False
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return "depth" in str(exc)  # past orjson's own limit; other faults are the app's to tell
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out `messages`, then listens to the client again."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
