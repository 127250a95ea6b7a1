"""The `mcp`-tagged routes as MCP tools: their schemas, and the official `mcp` client against a
real server over streamable HTTP (`/mcp`) and over stdio (`lf mcp --stdio`)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from llamafarm.api import create_app
from llamafarm.api.mcp import Operation, ToolInputError, operations
from llamafarm.cli.main import app as cli
from llamafarm.settings import Settings
from tests.api.test_openapi import MCP_OPERATIONS
from tests.e2e import conftest as e2e

start_server = e2e.start_server

NOTES = "# Alpine\n\nAlpine glaciers retreat every summer as the ice melts.\n"
MANUAL = b"The dishwasher shows error E4417 when its drain hose is blocked."


# --- tools from the OpenAPI document -------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> dict[str, Operation]:
    return operations(create_app(Settings(version_check_url="")).openapi())


def refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if "$ref" in schema else []
        return own + [r for value in schema.values() for r in refs(value)]
    if isinstance(schema, list):
        return [r for value in schema for r in refs(value)]
    return []


def test_the_tools_are_the_mcp_tagged_routes(catalog: dict[str, Operation]) -> None:
    assert set(catalog) == MCP_OPERATIONS
    for name, operation in catalog.items():
        tool = operation.tool()
        assert tool.name == name
        assert tool.input_schema["type"] == "object"
        assert refs(tool.input_schema) == [], name  # self-contained
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert tool.description and len(tool.description) > len(operation.title), name


def test_arguments_are_parameters_plus_body_fields(catalog: dict[str, Operation]) -> None:
    query = catalog["rag_query"].input_schema
    assert list(query["properties"])[:3] == ["namespace", "project", "query"]
    assert query["required"] == ["namespace", "project", "query"]
    assert query["properties"]["top_k"]["anyOf"][0]["maximum"] == 1000
    assert query["additionalProperties"] is False

    upload = catalog["dataset_data_upload"].input_schema
    assert list(upload["properties"]) == [
        "namespace",
        "project",
        "dataset",
        "auto_process",
        "filename",
        "content",
        "content_base64",
    ]
    assert upload["required"] == ["namespace", "project", "dataset", "filename"]
    assert "content_base64" in catalog["dataset_data_upload"].description
    assert catalog["task_get"].tool().annotations.read_only_hint is True  # type: ignore[union-attr]
    assert catalog["project_delete"].tool().annotations.destructive_hint is True  # type: ignore[union-attr]


def test_a_call_becomes_the_routes_request(catalog: dict[str, Operation]) -> None:
    http = httpx.AsyncClient(base_url="http://lf")
    request = catalog["database_delete"].request(
        http,
        {"namespace": "acme", "project": "kb", "database": "main db", "delete_collection": False},
    )
    assert request.method == "DELETE"
    assert str(request.url) == (
        "http://lf/v1/projects/acme/kb/rag/databases/main%20db?delete_collection=false"
    )

    request = catalog["rag_query"].request(
        http, {"namespace": "a", "project": "b", "query": "ice", "top_k": 2}
    )
    assert request.method == "POST" and request.url.path == "/v1/projects/a/b/rag/query"
    assert json.loads(request.content) == {"query": "ice", "top_k": 2}

    # A slash stays inside its segment, for the server to refuse.
    request = catalog["project_get"].request(http, {"namespace": "a/..", "project": "b"})
    assert request.url.raw_path == b"/v1/projects/a%2F../b"

    upload = catalog["dataset_data_upload"]
    args = {"namespace": "a", "project": "b", "dataset": "d", "filename": "m.txt"}
    request = upload.request(http, {**args, "content_base64": base64.b64encode(MANUAL).decode()})
    request.read()
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="file"; filename="m.txt"' in request.content and MANUAL in request.content


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("project_create", {"namespace": "acme"}, "missing required argument(s) name"),
        ("projects_list", {"namespace": "acme", "colour": "red"}, "unknown argument(s) colour"),
        ("projects_list", {"namespace": ""}, "namespace must be a non-empty string"),
        ("projects_list", {"namespace": {"a": 1}}, "namespace must be a non-empty string"),
        ("dataset_list", {"namespace": "a", "project": "b", "include_extra_details": {}}, "must"),
        ("dataset_data_upload", {"filename": "x.md"}, "exactly one of content or content_base64"),
        ("dataset_data_upload", {"filename": "x", "content_base64": "***"}, "not valid base64"),
        ("dataset_data_upload", {"filename": " ", "content": "hi"}, "filename must be"),
        # dot segments would be resolved into another route (`/v1/projects/../models`)
        ("project_get", {"namespace": "..", "project": "models"}, "namespace may not be '..'"),
        ("project_get", {"namespace": "acme", "project": "."}, "project may not be '.'"),
    ],
)
def test_bad_arguments_are_named(
    catalog: dict[str, Operation], name: str, arguments: dict[str, Any], message: str
) -> None:
    if name == "dataset_data_upload":
        arguments = {"namespace": "a", "project": "b", "dataset": "d", **arguments}
    with pytest.raises(ToolInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalog[name].request(httpx.AsyncClient(base_url="http://lf"), arguments)


def test_schemas_that_cannot_be_inlined_or_flattened() -> None:
    node = {"properties": {"children": {"items": {"$ref": "#/components/schemas/Node"}}}}
    document = {
        "paths": {
            "/trees/{name}": {
                "put": {
                    "operationId": "tree_put",
                    "tags": ["mcp"],
                    "parameters": [{"name": "name", "in": "path", "required": True}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "root": {"$ref": "#/components/schemas/Node"},
                                    },
                                }
                            }
                        },
                    },
                },
                "post": {
                    "operationId": "tree_text",
                    "tags": ["mcp"],
                    "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
                },
                "get": {"operationId": "tree_get", "tags": ["other"]},
            }
        },
        "components": {"schemas": {"Node": {"type": "object", **node}}},
    }
    found = operations(document)
    assert list(found) == ["tree_put"]  # text/plain has no tool; untagged is not one
    schema = found["tree_put"].input_schema
    # The body's `name` would clash with the path's: the body is one argument.
    assert schema["required"] == ["name", "body"]
    root = schema["properties"]["body"]["properties"]["root"]
    assert root["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    request = found["tree_put"].request(
        httpx.AsyncClient(base_url="http://lf"), {"name": "oak", "body": {"name": "oak"}}
    )
    assert json.loads(request.content) == {"name": "oak"}


# --- `lf mcp` --------------------------------------------------------------------------------


def json_blocks(text: str) -> list[Any]:
    decoder, blocks, at = json.JSONDecoder(), [], 0
    while (at := text.find("\n{", at)) != -1:
        block, end = decoder.raw_decode(text, at + 1)
        blocks.append(block)
        at = end
    return blocks


def test_lf_mcp_prints_the_url_and_client_configs() -> None:
    result = CliRunner().invoke(cli, ["--server-url", "http://127.0.0.1:9123/", "mcp"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:9123/mcp" in result.output.splitlines()[0]
    by_url, by_command = json_blocks(result.output)
    assert by_url == {"mcpServers": {"llamafarm": {"url": "http://127.0.0.1:9123/mcp"}}}
    stdio = by_command["mcpServers"]["llamafarm"]
    assert Path(stdio["command"]).name == "lf"
    assert stdio["args"] == ["--server-url", "http://127.0.0.1:9123", "mcp", "--stdio"]


# --- against a real server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(start_server: Any) -> e2e.Server:
    started: e2e.Server = start_server()
    return started


@asynccontextmanager
async def over_http(url: str) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(f"{url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def over_stdio(url: str, log: Path) -> AsyncIterator[ClientSession]:
    lf = StdioServerParameters(command=e2e.LF, args=["--server-url", url, "mcp", "--stdio"])
    with log.open("w") as errlog:
        async with (
            stdio_client(lf, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, /, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    body = result.structured_content
    assert isinstance(body, dict)
    assert json.loads(result.content[0].text) == body  # type: ignore[union-attr]
    return body


async def failure(session: ClientSession, tool: str, /, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


@pytest.mark.slow
def test_an_agent_ingests_and_queries_over_http(server: e2e.Server) -> None:
    async def agent() -> None:
        async with over_http(server.url) as session:
            listed = await session.list_tools()
            assert {tool.name for tool in listed.tools} == MCP_OPERATIONS

            assert (await call(session, "projects_list", namespace="mcp-http"))["total"] == 0
            created = await call(session, "project_create", namespace="mcp-http", name="kb")
            assert created["project"]["name"] == "kb"
            ref = {"namespace": "mcp-http", "project": "kb"}
            listed_projects = await call(session, "projects_list", namespace="mcp-http")
            assert [p["name"] for p in listed_projects["projects"]] == ["kb"]

            names = await call(session, "dataset_strategies_list", **ref)
            dataset = await call(
                session,
                "dataset_create",
                **ref,
                name="notes",
                database=names["databases"][0],
                data_processing_strategy=names["data_processing_strategies"][0],
            )
            assert dataset["dataset"]["name"] == "notes"

            text = await call(
                session,
                "dataset_data_upload",
                **ref,
                dataset="notes",
                filename="alpine.md",
                content=NOTES,
            )
            assert (text["filename"], text["skipped"]) == ("alpine.md", False)
            binary = await call(
                session,
                "dataset_data_upload",
                **ref,
                dataset="notes",
                filename="manual.txt",
                content_base64=base64.b64encode(MANUAL).decode(),
            )
            assert binary["size"] == len(MANUAL)

            accepted = await call(
                session, "dataset_actions", **ref, dataset="notes", action_type="process"
            )
            deadline = time.monotonic() + 90
            while (task := await call(session, "task_get", **ref, task_id=accepted["task_id"]))[
                "state"
            ] not in ("SUCCESS", "FAILURE", "REVOKED"):
                assert time.monotonic() < deadline, task  # guards against a hang only
                await anyio.sleep(0.3)
            assert task["state"] == "SUCCESS", task
            assert task["result"]["processed_files"] == 2

            found = await call(
                session, "rag_query", **ref, query="Why do glaciers get smaller?", top_k=1
            )
            assert found["results"][0]["metadata"]["source"] == "alpine.md"
            assert "glaciers retreat" in found["results"][0]["content"]
            code = await call(session, "rag_query", **ref, query="E4417", top_k=1)
            assert code["results"][0]["metadata"]["source"] == "manual.txt"

    anyio.run(agent)


@pytest.mark.slow
def test_bad_calls_are_tool_errors_and_the_session_goes_on(server: e2e.Server) -> None:
    async def agent() -> None:
        async with over_http(server.url) as session:
            invalid = await failure(session, "project_create", namespace="mcp-bad", name="a b!")
            assert invalid.startswith("Error 400: Invalid project name 'a b!'")
            missing = await failure(session, "project_create", namespace="mcp-bad")
            assert (
                missing == "Invalid arguments for project_create: missing required argument(s) name"
            )
            unknown = await failure(session, "project_get", namespace="mcp-bad", project="nope")
            assert unknown.startswith("Error 404: ") and "nope" in unknown
            slash = await failure(session, "project_get", namespace="../etc", project="x")
            assert slash.startswith("Error 400: ")
            typed = await failure(session, "rag_query", namespace="a", project="b", query="")
            assert typed.startswith("Error 422: ") and "query" in typed
            with pytest.raises(MCPError, match="Unknown tool: shell"):
                await session.call_tool("shell", {})
            assert (await call(session, "projects_list", namespace="mcp-bad"))["total"] == 0

    anyio.run(agent)


@pytest.mark.slow
def test_mcp_refuses_pages_of_other_sites(server: e2e.Server) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    evil = httpx.post(
        f"{server.url}/mcp", json=ping, headers={**headers, "Origin": "http://evil.example"}
    )
    assert evil.status_code == 403
    assert "evil.example" in evil.json()["detail"]
    local = httpx.post(
        f"{server.url}/mcp", json=ping, headers={**headers, "Origin": "http://localhost:3000"}
    )
    assert local.status_code == 200, local.text
    rebound = httpx.post(
        f"{server.url}/mcp", json=ping, headers={**headers, "Host": "evil.example"}
    )
    assert rebound.status_code == 421 and "evil.example" in rebound.json()["detail"]
    # Stateless: no event stream to open with GET (it would stay open carrying nothing).
    stream = httpx.get(f"{server.url}/mcp", headers={"Accept": "text/event-stream"}, timeout=10)
    assert stream.status_code == 405 and stream.headers["allow"] == "POST"
    assert "POST" in stream.json()["detail"]


@pytest.mark.slow
def test_lf_mcp_stdio_serves_the_same_tools(server: e2e.Server, tmp_path: Path) -> None:
    async def desktop() -> None:
        async with over_stdio(server.url, tmp_path / "stdio.log") as session:
            listed = await session.list_tools()
            assert {tool.name for tool in listed.tools} == MCP_OPERATIONS
            await call(session, "project_create", namespace="mcp-stdio", name="desk")
            projects = await call(session, "projects_list", namespace="mcp-stdio")
            assert [p["name"] for p in projects["projects"]] == ["desk"]
            missing = await failure(session, "project_get", namespace="mcp-stdio", project="x")
            assert missing.startswith("Error 404: ")

    anyio.run(desktop)
    assert httpx.get(f"{server.url}/v1/projects/mcp-stdio/desk").status_code == 200


@pytest.mark.slow
def test_lf_mcp_stdio_without_a_server_says_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{e2e.free_port()}"

    async def desktop() -> None:
        async with over_stdio(url, tmp_path / "stdio.log") as session:
            with pytest.raises(MCPError, match=f"Cannot reach the llamafarm server at {url}"):
                await session.list_tools()
            message = await failure(session, "projects_list", namespace="x")
            assert "lf start" in message

    anyio.run(desktop)
