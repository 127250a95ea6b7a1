"""`lf start --allow-mcp-command` and the policy reaching the embedded worker: a project whose
config has an allowed stdio MCP server is written by the server and loaded by the worker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_ingest import NOTES, Api

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent.parent / "chat" / "mcp_server.py"


def test_allowed_commands_reach_the_server_and_its_worker(start_server: type[Server]) -> None:
    server = start_server("--allow-mcp-command", sys.executable, "--allow-mcp-command", "uvx")
    api = Api(server, "policy")
    try:
        check(api)
    finally:
        api.http.close()


def check(api: Api) -> None:
    config = api.http.get(api.base).json()["project"]["config"]
    mcp = {"name": "calc", "transport": "stdio", "command": sys.executable, "args": [str(SCRIPT)]}
    refused = api.http.put(
        api.base, json={"config": {**config, "mcp": {"servers": [{**mcp, "command": "sh"}]}}}
    )
    assert refused.status_code == 422, refused.text
    assert "LF_MCP_ALLOWED_COMMANDS" in refused.json()["detail"]
    allowed = api.http.put(api.base, json={"config": {**config, "mcp": {"servers": [mcp]}}})
    assert allowed.status_code == 200, allowed.text

    # The worker loads the same config: it must allow the same command, or the file fails.
    dataset = config["datasets"][0]["name"]
    assert api.upload(dataset, "notes.md", NOTES).status_code == 200
    result = api.wait(api.process(dataset))
    assert result["state"] == "SUCCESS", result
