"""The API's `mcp`-tagged routes as MCP tools, over streamable HTTP at `/mcp` and over stdio.

The OpenAPI document is the one source of truth. Each operation tagged `mcp` becomes a tool named
by its operation id; its arguments are the operation's path and query parameters plus the fields
of its request body, and calling it sends the matching HTTP request. `McpEndpoint` sends that
request to this app in process; `serve_stdio` sends it to a running server over the network.
Nothing else differs between the two.

Errors an agent can act on are tool results with `isError: true`, never a failed session:

    ToolInputError   arguments that cannot make a request (missing, unknown, bad base64)
    Unreachable      the server did not answer (stdio only: `lf start` is not running)
    an error answer  the API's own `{"detail": ...}`, with its status

Only a tool name that does not exist is a protocol error.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from llamafarm import __version__
from llamafarm.api.auth import CREDENTIAL_HEADERS
from llamafarm.api.limits import MULTIPART_SLACK
from llamafarm.settings import Settings

log = logging.getLogger(__name__)

TAG = "mcp"
REF = "#/components/schemas/"
INSTRUCTIONS = (
    "llamafarm is a local-first AI project server. Projects live in namespaces; names of "
    "namespaces, projects, datasets and databases are 1-64 letters, digits, '_', '.' or '-'. "
    "To search documents: project_create, then dataset_create (dataset_strategies_list names "
    "the strategies and databases), dataset_data_upload for each file, dataset_actions with "
    'action_type "process", task_get with the returned task_id until its state is SUCCESS, '
    "then rag_query."
)
UPLOAD_ARGUMENTS: dict[str, Any] = {
    "filename": {
        "type": "string",
        "minLength": 1,
        "description": "The file's name; its extension picks the parser (.md, .pdf, .docx…).",
    },
    "content": {
        "type": "string",
        "description": "The file's text, stored as UTF-8. Give this or content_base64.",
    },
    "content_base64": {
        "type": "string",
        "contentEncoding": "base64",
        "description": "The file's bytes, base64-encoded (PDF, DOCX…). Give this or content.",
    },
}
UPLOAD_HELP = (
    "The file goes in `filename` plus either `content` (its text) or `content_base64` "
    "(any bytes, base64-encoded)."
)

BodyKind = Literal["none", "fields", "whole", "upload"]


class ToolInputError(Exception):
    """Arguments that cannot make a request; the agent sees the message and can try again."""


class Unreachable(Exception):
    """The API did not answer, or not as a llamafarm server does."""


@dataclass(frozen=True)
class Operation:
    """One tagged OpenAPI operation: its tool, and how a call's arguments become its request.

    `body` says where the body comes from: `fields` are arguments of their own (JSON), `whole`
    is the one argument `body`, `upload` is `filename` + `content`/`content_base64` sent as the
    multipart field `file_field` with `body_fields` beside it.
    """

    name: str
    method: str
    path: str
    title: str
    description: str
    input_schema: dict[str, Any]
    path_params: tuple[str, ...] = ()
    query_params: tuple[str, ...] = ()
    body: BodyKind = "none"
    body_fields: tuple[str, ...] = ()
    file_field: str = ""

    def tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=self.input_schema,
            annotations=types.ToolAnnotations(
                title=self.title,
                read_only_hint=self.method == "GET",
                destructive_hint=self.method in ("PUT", "PATCH", "DELETE"),
                idempotent_hint=self.method in ("GET", "PUT", "DELETE"),
            ),
        )

    def request(self, client: httpx.AsyncClient, arguments: Mapping[str, Any]) -> httpx.Request:
        properties = self.input_schema["properties"]
        unknown = sorted(set(arguments) - set(properties))
        if unknown:
            raise ToolInputError(
                f"unknown argument(s) {', '.join(unknown)}; it takes {', '.join(properties)}"
            )
        missing = [n for n in self.input_schema["required"] if arguments.get(n) is None]
        if missing:
            raise ToolInputError(f"missing required argument(s) {', '.join(missing)}")
        url = self.path
        for name in self.path_params:
            url = url.replace(f"{{{name}}}", quote(_segment(name, arguments[name]), safe=""))
        params = {
            n: _query_value(n, arguments[n])
            for n in self.query_params
            if arguments.get(n) is not None
        }
        if self.body == "fields":
            body = {n: arguments[n] for n in self.body_fields if n in arguments}
            return client.build_request(self.method, url, params=params, json=body)
        if self.body == "whole" and arguments.get("body") is not None:
            return client.build_request(self.method, url, params=params, json=arguments["body"])
        if self.body == "upload":
            files = {self.file_field: (_filename(arguments), _file_bytes(arguments))}
            data = {
                n: _form_value(n, arguments[n])
                for n in self.body_fields
                if arguments.get(n) is not None
            }
            return client.build_request(self.method, url, params=params, files=files, data=data)
        return client.build_request(self.method, url, params=params)


def operations(openapi: Mapping[str, Any]) -> dict[str, Operation]:
    """The operations tagged `mcp`, by name; one no tool can express is logged and left out."""
    schemas = openapi.get("components", {}).get("schemas", {})
    found: dict[str, Operation] = {}
    for path, item in openapi.get("paths", {}).items():
        for method, spec in item.items():
            if not isinstance(spec, dict) or TAG not in spec.get("tags", ()):
                continue
            try:
                operation = _operation(path, method.upper(), spec, _Inliner(schemas))
            except ValueError as exc:
                log.warning("no MCP tool for %s %s: %s", method.upper(), path, exc)
                continue
            found[operation.name] = operation
    return found


def _operation(path: str, method: str, spec: Mapping[str, Any], inline: _Inliner) -> Operation:
    name = spec.get("operationId")
    if not name:
        raise ValueError("it has no operationId")
    properties: dict[str, Any] = {}
    required: list[str] = []
    places: dict[str, list[str]] = {"path": [], "query": []}
    for param in sorted(spec.get("parameters", []), key=lambda p: _position(path, p)):
        if param.get("in") not in places:
            if param.get("required"):
                raise ValueError(f"required {param.get('in')} parameter {param.get('name')!r}")
            continue
        schema = dict(inline(param.get("schema", {})))
        if param.get("description"):
            schema.setdefault("description", param["description"])
        properties[param["name"]] = schema
        places[param["in"]].append(param["name"])
        if param.get("required"):
            required.append(param["name"])

    body: BodyKind = "none"
    fields: tuple[str, ...] = ()
    file_field = ""
    notes: list[str] = []
    request_body = spec.get("requestBody") or {}
    content = request_body.get("content", {})
    if "application/json" in content:
        schema = inline(content["application/json"].get("schema", {}))
        own = schema.get("properties")
        if schema.get("type") == "object" and own and not set(own) & set(properties):
            properties |= own
            required += schema.get("required", [])
            body, fields = "fields", tuple(own)
        else:  # not an object of named fields, or they clash with a parameter
            properties["body"] = schema
            required += ["body"] if request_body.get("required") else []
            body = "whole"
    elif "multipart/form-data" in content:
        schema = inline(content["multipart/form-data"].get("schema", {}))
        own = schema.get("properties", {})
        files = [k for k, v in own.items() if _is_file(v)]
        if len(files) != 1:
            raise ValueError("a multipart body needs exactly one file field")
        others = {k: v for k, v in own.items() if k != files[0]}
        if (set(others) | set(UPLOAD_ARGUMENTS)) & set(properties) or set(others) & set(
            UPLOAD_ARGUMENTS
        ):
            raise ValueError("its form fields clash with its parameters")
        properties |= UPLOAD_ARGUMENTS | others
        required += ["filename", *(k for k in schema.get("required", []) if k in others)]
        body, fields, file_field = "upload", tuple(others), files[0]
        notes.append(UPLOAD_HELP)
    elif content:
        raise ValueError(f"a request body of type {', '.join(content)}")

    input_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(dict.fromkeys(required)),
        "additionalProperties": False,
    }
    if inline.defs:
        input_schema["$defs"] = inline.defs
    title = spec.get("summary") or name
    return Operation(
        name=name,
        method=method,
        path=path,
        title=title,
        description="\n\n".join(p for p in (title, spec.get("description"), *notes) if p),
        input_schema=input_schema,
        path_params=tuple(places["path"]),
        query_params=tuple(places["query"]),
        body=body,
        body_fields=fields,
        file_field=file_field,
    )


class _Inliner:
    """Copies a schema with each `$ref` to a component replaced by the component itself.

    A component that contains itself cannot be inlined: it goes to `defs` (the tool schema's
    `$defs`) once, and its inner uses point there, so the tool's schema stays self-contained.
    """

    def __init__(self, components: Mapping[str, Any]) -> None:
        self.components = components
        self.defs: dict[str, Any] = {}

    def __call__(self, node: Any, within: tuple[str, ...] = ()) -> Any:
        if isinstance(node, list):
            return [self(item, within) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        rest = {k: self(v, within) for k, v in node.items() if k != "$ref"}
        if not (
            isinstance(ref, str) and ref.startswith(REF) and ref[len(REF) :] in self.components
        ):
            return rest if ref is None else {"$ref": ref, **rest}
        name = ref[len(REF) :]
        if name not in within:
            return {**self(self.components[name], (*within, name)), **rest}
        if name not in self.defs:
            self.defs[name] = {}  # claimed first, so its own inner uses do not come back here
            self.defs[name] = self(self.components[name], (name,))
        return {"$ref": f"#/$defs/{name}", **rest}


def _position(path: str, param: Mapping[str, Any]) -> int:
    """Path parameters in the order the path names them, then the others as they come."""
    if param.get("in") == "path" and f"{{{param.get('name')}}}" in path:
        return path.index(f"{{{param.get('name')}}}")
    return len(path)


def _is_file(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "array":
        return _is_file(schema.get("items", {}))
    return schema.get("format") == "binary" or "contentMediaType" in schema


def _segment(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ToolInputError(f"{name} must be a non-empty string")
    if value in (".", ".."):
        # quote() keeps dots, and a URL's dot segments are resolved: `..` would lead the
        # call to a route that is not this tool's.
        raise ToolInputError(f"{name} may not be {value!r}")
    return str(value)


def _query_value(name: str, value: Any) -> Any:
    scalar = (str, int, float, bool)
    if isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    ):
        return value
    raise ToolInputError(f"{name} must be a string, number or boolean")


def _form_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ToolInputError(f"{name} must be a string, number or boolean")


def _filename(arguments: Mapping[str, Any]) -> str:
    name = arguments["filename"]
    if not isinstance(name, str) or not name.strip():
        raise ToolInputError("filename must be a non-empty string")
    return name


def _file_bytes(arguments: Mapping[str, Any]) -> bytes:
    text, encoded = arguments.get("content"), arguments.get("content_base64")
    if (text is None) == (encoded is None):
        raise ToolInputError("give the file as exactly one of content or content_base64")
    if text is not None:
        if not isinstance(text, str):
            raise ToolInputError("content must be a string")
        try:
            return text.encode()
        except UnicodeEncodeError as exc:
            raise ToolInputError(f"content is not valid text: {exc}") from exc
    if not isinstance(encoded, str):
        raise ToolInputError("content_base64 must be a string")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolInputError(f"content_base64 is not valid base64: {exc}") from exc


class ApiTools:
    """The tools of one llamafarm API, listed from its `/openapi.json` and called via `client`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._operations: dict[str, Operation] | None = None

    async def operations(self, headers: Mapping[str, str] | None = None) -> dict[str, Operation]:
        if self._operations is None:
            try:
                response = await self.client.get("/openapi.json", headers=headers)
            except httpx.TransportError as exc:
                raise Unreachable(self._unreachable(exc)) from exc
            try:
                document = response.raise_for_status().json()
            except (httpx.HTTPStatusError, ValueError) as exc:
                raise Unreachable(
                    f"{self.client.base_url} is not a llamafarm server: {exc}"
                ) from exc
            if not isinstance(document, dict):
                raise Unreachable(f"{self.client.base_url} is not a llamafarm server")
            self._operations = operations(document)
        return self._operations

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            found = await self.operations(_credentials(ctx))
        except Unreachable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from exc
        return types.ListToolsResult(tools=[operation.tool() for operation in found.values()])

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        credentials = _credentials(ctx)
        try:
            found = await self.operations(credentials)
        except Unreachable as exc:
            return _error(str(exc))
        operation = found.get(params.name)
        if operation is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        try:
            request = operation.request(self.client, params.arguments or {})
            request.headers.update(credentials)
            response = await self.client.send(request)
        except ToolInputError as exc:
            return _error(f"Invalid arguments for {operation.name}: {exc}")
        except httpx.TransportError as exc:
            return _error(self._unreachable(exc))
        return _result(response)

    def server(self) -> Server[Any]:
        return Server(
            "llamafarm",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    def _unreachable(self, exc: httpx.TransportError) -> str:
        url = self.client.base_url
        if isinstance(exc, httpx.TimeoutException):
            return f"The llamafarm server at {url} did not answer in time ({exc!r})"
        return (
            f"Cannot reach the llamafarm server at {url} ({exc}). "
            "Start it with `lf start`, or pass --server-url."
        )


def _credentials(ctx: ServerRequestContext[Any]) -> dict[str, str]:
    """The API key of the HTTP request this MCP message came in (none over stdio), for the
    requests its tool makes: a tool reaches only what the caller's key reaches."""
    headers = getattr(ctx.request, "headers", None)
    if headers is None:
        return {}
    return {name: headers[name] for name in CREDENTIAL_HEADERS if name in headers}


def _result(response: httpx.Response) -> types.CallToolResult:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.is_error:
        detail = body["detail"] if isinstance(body, dict) and "detail" in body else None
        return _error(
            f"Error {response.status_code}: {detail or response.text or response.reason_phrase}"
        )
    text = response.text if body is None else json.dumps(body, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content=body if isinstance(body, dict) else None,
    )


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


class McpEndpoint:
    """The ASGI app at `/mcp`: the tools over streamable HTTP, calling the app in process.

    Stateless, with JSON answers: no session outlives its request, so any replica can answer.
    """

    def __init__(self, settings: Settings) -> None:
        self.base_url = _own_url(settings)
        # Uploads come base64-encoded: 4 bytes for 3.
        self.max_body = -(-settings.max_upload_bytes * 4 // 3) + MULTIPART_SLACK
        self.manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self, app: FastAPI) -> AsyncIterator[None]:
        """Serve while the app's lifespan runs; each lifespan gets a fresh session manager."""
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=self.base_url, timeout=None
        ) as client:
            manager = StreamableHTTPSessionManager(
                ApiTools(client).server(),
                stateless=True,
                json_response=True,
                # Host and Origin are checked for every route by SiteGuard (api/sites.py).
                security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
                max_request_body_size=self.max_body,
            )
            async with manager.run():
                self.manager = manager
                try:
                    yield
                finally:
                    self.manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(Headers(scope=scope), scope["method"])
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self.manager is None:
            response = JSONResponse({"detail": "MCP is served only while the server runs"}, 503)
            await response(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)

    def _refusal(self, headers: Headers, method: str) -> JSONResponse | None:
        """Why a request is refused, as a response; None when it may go on.

        Stateless, this endpoint answers POSTs only (a GET would open an event stream that
        never carries anything). The DNS-rebinding checks the MCP spec asks of local servers
        (Host, Origin) are SiteGuard's, as for every route, and API keys KeyGuard's.
        """
        if method != "POST":
            return JSONResponse(
                {"detail": f"{method} is not served at /mcp: send JSON-RPC requests with POST"},
                405,
                headers={"Allow": "POST"},
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            limit = self.max_body >> 20
            return JSONResponse({"detail": f"Request body is larger than {limit} MiB"}, 413)
        if not headers.get("content-type", "").lower().startswith("application/json"):
            return JSONResponse({"detail": "Send JSON-RPC with Content-Type application/json"}, 400)
        return None


def _own_url(settings: Settings) -> str:
    """Where this server answers, for the URLs its in-process answers contain (`task_uri`)."""
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


async def serve_stdio(base_url: str, *, api_key: str = "", timeout: float = 120.0) -> None:
    """Serve the tools of the server at `base_url` on stdin/stdout until the client leaves."""
    limits = httpx.Timeout(timeout, connect=5.0)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with httpx.AsyncClient(base_url=base_url, timeout=limits, headers=headers) as client:
        server = ApiTools(client).server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
