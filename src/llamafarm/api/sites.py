"""Who may address the server: the Host it is called by, and the web page a request comes from.

A page on any site can make the user's browser send "simple" requests (form posts, multipart
uploads) to `http://127.0.0.1:8000`, and a DNS-rebinding page can make its own host name point
at 127.0.0.1 and then read the answers too (Ollama's CVE-2024-28224). So, on every route:

- the `Host` header must name this server: a loopback name, the address it binds to, or one of
  `LF_ALLOWED_HOSTS` (`*` turns the check off, for a reverse proxy that checks it) -> else 421;
- a state-changing request (POST, PUT, PATCH, DELETE) that carries an `Origin` must come from
  an allowed page: a loopback page on any port, one of `LF_CORS_ORIGINS`, or the server's own
  origin (`Origin: null` never) -> else 403;
- a CORS preflight from any other origin is refused the same way, as JSON.

Clients that are not browsers (the CLI, the `openai` SDK, MCP clients) send no Origin.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from llamafarm.settings import Settings

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
"""Loopback names as they appear in a Host or Origin header."""
LOCAL_ORIGIN_REGEX = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
"""A page served from loopback on any port (for CORSMiddleware)."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def hostname(authority: str) -> str:
    """`Example.com:8000` -> `example.com`, `[::1]:8000` -> `[::1]`.

    Only a numeric port is taken off: `localhost:80@evil.example` or `[::1]evil.example` stays
    whole, so it matches no allowed name.
    """
    authority = authority.lower()
    if authority.startswith("["):
        name, bracket, port = authority.partition("]")
        return name + bracket if port == "" or _is_port(port) else authority
    name, colon, port = authority.rpartition(":")
    return name if colon and port.isdigit() else authority


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit()


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names the server answers to; None when any will do (`LF_ALLOWED_HOSTS=*`)."""
    if "*" in settings.allowed_hosts:
        return None
    names = {hostname(name.strip()) for name in settings.allowed_hosts if name.strip()}
    bound = settings.host.strip().lower()
    if bound not in WILDCARD_BINDS:
        names.add(f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound)
    return LOOPBACK_HOSTS | names


class SiteGuard:
    """421 for a Host that is not this server's, 403 for a write or preflight from a foreign page.

    Costs one pass over the request headers; outermost, so a refused request reaches nothing.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.any_origin = "*" in settings.cors_origins
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = None
        hosts = 0
        preflight = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight = True
        if hosts > 1:
            # Which one would count? This check reads one, the app's URLs another: refuse both.
            refusal: JSONResponse | None = JSONResponse(
                {"detail": "A request may carry one Host header"}, 400
            )
        else:
            refusal = self._refusal(host, origin, scope["method"], preflight)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _refusal(
        self, host: str | None, origin: str | None, method: str, preflight: bool
    ) -> JSONResponse | None:
        if self.hosts is not None:
            if not host:
                return JSONResponse({"detail": "A Host header is required"}, 400)
            if hostname(host) not in self.hosts:
                return JSONResponse(
                    {
                        "detail": f"Host {host!r} is not a name this server answers to "
                        "(the operator can add it to LF_ALLOWED_HOSTS)"
                    },
                    421,
                )
        checked = method in WRITE_METHODS or (method == "OPTIONS" and preflight)
        if checked and origin is not None and not self._origin_allowed(origin, host or ""):
            return JSONResponse(
                {"detail": f"Requests from the page at {origin!r} are not allowed"}, 403
            )
        return None

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if self.any_origin:
            return True
        origin = origin.lower()
        if origin in self.origins:
            return True
        scheme, sep, authority = origin.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False  # `null` (sandboxed frames, file: pages) and anything else
        # A loopback page on any port, or the server's own pages (same authority as Host).
        return hostname(authority) in LOOPBACK_HOSTS or authority == host.lower()
