"""Optional API keys: when any key exists (or `LF_REQUIRE_AUTH=true`), every route but liveness
and the Designer's static shell and files (`api/ui.py`, GETs that hold no data) needs one, as
`Authorization: Bearer <key>` (what the `openai` SDK sends) or `X-API-Key`.

A key may be limited to one namespace: any `/v1/projects/{other}/...` is then a 404, so names
in other namespaces do not leak, and writes outside namespaces (model downloads and deletes)
are refused. A read-only key may not write: every POST, PUT, PATCH and DELETE is a write except
the POSTs that only ask (`.../chat/completions`, `.../rag/query`) and `/mcp`, whose tools are
judged one by one as the in-process requests they make (they carry the caller's key).

Keys are looked up in a snapshot of the key table, reloaded at most once a `Keyring.ttl`
(off the event loop): a created key works, and a revoked one stops working, within about a
second and without a restart, and a request costs one SHA-256 and a dict lookup. No key is ever
compared with a stored one: the lookup compares digests of what the client sent, and a client
cannot choose a digest, so its timing tells nothing about a key (no `compare_digest` needed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from llamafarm.api.sites import WRITE_METHODS
from llamafarm.api.ui import is_ui_request
from llamafarm.errors import Forbidden
from llamafarm.state import StateDB
from llamafarm.state.keys import Grant, hash_key, load_grants

log = logging.getLogger(__name__)

GRANT = "llamafarm.grant"
"""The scope key under which a request's Grant travels to the routes."""
OPEN_PATHS = frozenset({"/health/liveness"})
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
"""The request headers that carry a key (forwarded by /mcp to the requests its tools make)."""


class Keyring:
    """The key table as a dict by digest, refreshed at most every `ttl` seconds."""

    def __init__(self, *, require: bool, ttl: float = 1.0) -> None:
        self.require = require
        self.ttl = ttl
        self.db: StateDB | None = None
        self.grants: Mapping[str, Grant] = {}
        self.loaded_at = 0.0
        self._refreshing = False

    def open(self, db: StateDB) -> None:
        self.grants = load_grants(db)
        self.loaded_at = time.monotonic()
        self.db = db

    def close(self) -> None:
        self.db = None

    async def current(self) -> Mapping[str, Grant] | None:
        """The grants by digest; None while the server is not serving (no database yet)."""
        if self.db is None:
            return None
        if time.monotonic() - self.loaded_at > self.ttl and not self._refreshing:
            # Requests that come while one reloads use the snapshot they find.
            self._refreshing = True
            try:
                self.grants = await asyncio.to_thread(load_grants, self.db)
            except Exception:  # a database hiccup: keep the last snapshot, try again later
                log.exception("could not reload the API keys")
            finally:
                self.loaded_at = time.monotonic()
                self._refreshing = False
        return self.grants


class KeyGuard:
    """401 without a valid key (when keys are on), 403/404 for what the key may not reach."""

    def __init__(self, app: ASGIApp, *, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        grants = await self.keyring.current()
        if grants is None:
            response = JSONResponse({"detail": "The server is not serving yet"}, 503)
            await response(scope, receive, send)
            return
        if (
            (not grants and not self.keyring.require)
            or scope["path"] in OPEN_PATHS
            or is_ui_request(scope)  # the Designer's shell and files: no data in them
        ):
            await self.app(scope, receive, send)
            return
        grant = grants.get(hash_key(key)) if (key := _key(scope)) else None
        if grant is None:
            detail = "Invalid API key" if key else "An API key is required"
            response = JSONResponse(
                {"detail": f"{detail}: send it as 'Authorization: Bearer <key>' or 'X-API-Key'"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        refusal = _refusal(grant, scope["method"], scope["path"])
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope[GRANT] = grant
        await self.app(scope, receive, send)


def _key(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
        elif name == b"x-api-key" and value.strip():
            return str(value.decode("latin-1").strip())
    return ""


def _refusal(grant: Grant, method: str, path: str) -> JSONResponse | None:
    parts = path.split("/")
    in_projects = len(parts) > 3 and parts[1] == "v1" and parts[2] == "projects"
    if grant.namespace is not None:
        if in_projects and parts[3] != grant.namespace:
            # What a missing project answers: the key learns nothing about other namespaces.
            missing = f"{parts[3]}/{parts[4]}" if len(parts) > 4 and parts[4] else parts[3]
            return JSONResponse({"detail": f"Project {missing} not found"}, 404)
        if method in WRITE_METHODS and len(parts) > 2 and parts[1:3] == ["v1", "models"]:
            return JSONResponse(
                {
                    "detail": f"The key {grant.name!r} is limited to namespace "
                    f"{grant.namespace!r}: it may not download or delete models"
                },
                403,
            )
    if grant.read_only and method in WRITE_METHODS and not _asks_only(parts, in_projects):
        return JSONResponse(
            {"detail": f"The key {grant.name!r} is read-only: {method} {path} is a write"}, 403
        )
    return None


def _asks_only(parts: list[str], in_projects: bool) -> bool:
    """POSTs that change nothing a client owns: a chat completion, a RAG query or evaluation,
    an MCP message."""
    if parts == ["", "mcp"]:
        return True
    asking = (["chat", "completions"], ["rag", "query"], ["rag", "evaluate"])
    return in_projects and len(parts) == 7 and parts[5:] in asking


def check_namespace(grant: Grant | None, namespace: str) -> None:
    """For routes that name a namespace in their body: refuse one the key may not reach."""
    if grant is not None and grant.namespace is not None and namespace != grant.namespace:
        raise Forbidden(f"The key {grant.name!r} is limited to namespace {grant.namespace!r}")


def exposure_problem(host: str, *, has_keys: bool, require_auth: bool) -> str | None:
    """Why serving on `host` would be unsafe, or None: a non-loopback address with no keys."""
    if has_keys or require_auth or is_loopback(host):
        return None
    return (
        f"Refusing to listen on {host!r} without API keys: anyone who can reach this address "
        "could use the whole API (read every project, run chats, change configs). Create a key "
        "first (`lf keys create NAME`), or set LF_REQUIRE_AUTH=true, or pass "
        "--insecure-no-auth if the network is trusted."
    )


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a wildcard (`0.0.0.0`, `::`, empty) or a host name
