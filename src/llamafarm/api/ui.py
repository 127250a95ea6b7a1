"""Serving the Designer (`llamafarm.ui`): its HTML shell at `GET /` for a browser, its files
under `/ui/`, each with a strict Content-Security-Policy.

The shell and its files hold no data, and a browser cannot attach an API key to a `<script>`
load, so these GETs (and only these) need no key (`api/auth.py` asks `is_ui_request`); every
API call the pages make sends the key the user typed. Host checks (`api/sites.py`) still apply.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from llamafarm.ui import INDEX_FILE, STATIC_DIR

UI_PREFIX = "/ui/"
"""Where the UI's files are served (the shell itself is `GET /`)."""
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Only this server's own files and API: no inline script, no other host, no framing."""
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
READS = frozenset({"GET", "HEAD"})


def accepts_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's `Accept` asks for HTML (a browser's navigation does; API clients
    send `application/json`, `*/*` or nothing, and get the JSON)."""
    return any(name == b"accept" and b"text/html" in value.lower() for name, value in headers)


def is_ui_request(scope: Scope) -> bool:
    """A GET of the shell (`/` asking for HTML) or of one of its files."""
    if scope["method"] not in READS:
        return False
    path: str = scope["path"]
    return path.startswith(UI_PREFIX) or (path == "/" and accepts_html(scope["headers"]))


def shell() -> Response:
    return FileResponse(INDEX_FILE, media_type="text/html; charset=utf-8", headers=HEADERS)


class UiFiles(StaticFiles):
    """The UI's static files with the UI's headers (JavaScript as `text/javascript`: with
    `nosniff`, a module script of any other type would not run)."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        if str(full_path).endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        return response
