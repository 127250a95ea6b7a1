"""Chat with tools: a project's MCP servers (a real stdio server, tests/chat/mcp_server.py) and
the client's own `tools`, against a loopback OpenAI-compatible server that answers with tool
calls as scripted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from llamafarm.settings import Settings
from tests.api.test_chat import ASK, BASE, chat, events, fake
from tests.api.test_events import detail, names, wait_for
from tests.chat.openai_server import OpenAIServer, Reply
from tests.chat.test_mcp_tools import open_connections

__all__ = ["fake"]  # the fixture, imported for its use here

pytestmark = pytest.mark.slow  # each test starts an MCP server process

SCRIPT = Path(__file__).parent.parent / "chat" / "mcp_server.py"
ADD = {"name": "add", "arguments": {"a": 2, "b": 3}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def mcp_server(name: str = "calc", *, log: Path | None = None, **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SCRIPT), name],
        "env": {"MCP_CALLS_LOG": str(log)} if log else {},
        **config,
    }


def configure(
    client: TestClient | httpx.Client,
    fake: OpenAIServer,
    servers: list[dict[str, Any]],
    **model: Any,
) -> Any:
    """Point the project's model at the fake server and give the project MCP servers."""
    config = client.get(BASE).json()["project"]["config"]
    config["runtime"] = {
        "models": [
            {
                "name": "default",
                "provider": "openai",
                "model": "fake-model",
                "base_url": fake.base_url,
                **model,
            }
        ]
    }
    config["mcp"] = {"servers": servers}
    return client.put(BASE, json={"config": config})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The operator allows the test server's interpreter, and one missing program."""
    return Settings(
        data_dir=tmp_path / "data",
        version_check_url="",
        mcp_allowed_commands=[sys.executable, "no-such-program-lf"],
        allowed_hosts=["testserver"],
    )


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    """Where the MCP server writes each call it gets."""
    return tmp_path / "calls.jsonl"


@pytest.fixture
def equipped(client: TestClient, fake: OpenAIServer, calls: Path, project: Any) -> TestClient:
    response = configure(client, fake, [mcp_server(log=calls)])
    assert response.status_code == 200, response.text
    return client


def logged(calls: Path) -> list[Any]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def offered(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


@pytest.mark.parametrize("stream", [False, True])
def test_the_model_calls_an_mcp_tool_then_answers(
    equipped: TestClient, fake: OpenAIServer, calls: Path, stream: bool
) -> None:
    fake.replies = [Reply(tool_calls=[ADD]), Reply(text="2 + 3 is 5.")]
    response = chat(equipped, rag_enabled=False, stream=stream)
    assert response.status_code == 200, response.text
    if stream:
        chunks = events(response)
        answer, finish = streamed_text(chunks), chunks[-1]["choices"][0]["finish_reason"]
        assert len({c["id"] for c in chunks}) == 1
        assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
        usage = chunks[-1]["usage"]
    else:
        body = response.json()
        answer, finish = (
            body["choices"][0]["message"]["content"],
            body["choices"][0]["finish_reason"],
        )
        assert "tool_calls" not in body["choices"][0]["message"]
        usage = body["usage"]
    assert (answer, finish) == ("2 + 3 is 5.", "stop")
    assert usage["total_tokens"] == 2 * (11 + 7)  # both rounds

    assert logged(calls) == [{"tool": "add", "arguments": {"a": 2, "b": 3}}]
    first, second = fake.chat_bodies()
    assert set(offered(first)) == {"add", "fail", "sleep", "pid", "crash"}
    assert "tool_choice" not in first
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "content": "5", "tool_call_id": "call_0"},
    ]

    # The session keeps the question and the answer, not the tool turns.
    session = response.headers["X-Session-ID"]
    history = equipped.get(f"{BASE}/chat/sessions/{session}/history").json()["messages"]
    assert history == [ASK[0], {"role": "assistant", "content": "2 + 3 is 5."}]

    # Each call is a sub-event of the inference event.
    event = detail(equipped, wait_for(equipped, 1, type="inference")["events"][0]["event_id"])
    steps = names(event)
    assert steps[:4] == ["request_received", "mcp_tools_ready", "llm_inference_start", "tool_call"]
    (call,) = [sub for sub in event["sub_events"] if sub["name"] == "tool_call"]
    assert call["data"] == {
        "tool": "add",
        "server": "calc",
        "arguments": {"a": 2, "b": 3},
        "round": 1,
        "status": "success",
        "error": None,
        "result_chars": 1,
    }
    assert call["duration_ms"] >= 0
    elapsed = [sub["elapsed_ms"] for sub in event["sub_events"]]
    assert elapsed == sorted(elapsed)
    assert event["data"]["response"] == {"content": "2 + 3 is 5.", "finish_reason": "stop"}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_rounds_are_bounded(
    client: TestClient, fake: OpenAIServer, calls: Path, project: Any, stream: bool
) -> None:
    response = configure(client, fake, [mcp_server(log=calls)], max_tool_rounds=2)
    assert response.status_code == 200, response.text
    fake.text, fake.tool_calls = "Still looking.", [ADD]  # every answer calls the tool again
    response = chat(client, rag_enabled=False, stream=stream)
    assert response.status_code == 200, response.text

    bodies = fake.chat_bodies()
    assert len(bodies) == 2 + 1  # two rounds of tool calls, then one last answer
    assert len(logged(calls)) == 2
    assert [body.get("tool_choice") for body in bodies] == [None, None, "none"]
    assert all(offered(body) for body in bodies)
    if stream:
        chunks = events(response)
        answer, finish = streamed_text(chunks), chunks[-1]["choices"][0]["finish_reason"]
    else:
        choice = response.json()["choices"][0]
        answer, finish = choice["message"]["content"], choice["finish_reason"]
        assert "tool_calls" not in choice["message"]
    # What the model said in every round; its last tool calls are dropped.
    assert answer == "\n\n".join(["Still looking."] * 3)
    assert finish == "stop"


def test_a_failing_tool_is_a_tool_message_not_an_error(
    equipped: TestClient, fake: OpenAIServer, calls: Path
) -> None:
    fake.replies = [
        Reply(
            tool_calls=[
                {"name": "fail", "arguments": {"reason": "closed"}},
                {"name": "add", "arguments": "{not json"},
                ADD,
            ]
        ),
        Reply(text="The shop is closed."),
    ]
    response = chat(equipped, rag_enabled=False)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "The shop is closed."
    results = [m for m in fake.chat_bodies()[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["call_0", "call_1", "call_2"]
    assert (
        results[0]["content"].startswith("Error: ") and "refused: closed" in results[0]["content"]
    )
    assert results[1]["content"].startswith("Error: the arguments are not a JSON object")
    assert results[2]["content"] == "5"
    # The three ran at once; the broken one never reached the server.
    assert sorted(entry["tool"] for entry in logged(calls)) == ["add", "fail"]

    event = detail(equipped, wait_for(equipped, 1, type="inference")["events"][0]["event_id"])
    statuses = [s["data"]["status"] for s in event["sub_events"] if s["name"] == "tool_call"]
    assert sorted(statuses) == ["error", "error", "success"]


@pytest.mark.parametrize("stream", [False, True])
def test_calls_of_the_clients_tools_go_back_to_the_client(
    equipped: TestClient, fake: OpenAIServer, calls: Path, stream: bool
) -> None:
    weather_call = {"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}
    fake.replies = [Reply(tool_calls=[weather_call, ADD])]
    response = chat(equipped, rag_enabled=False, stream=stream, tools=[WEATHER])
    assert response.status_code == 200, response.text
    expected = {
        "id": "call_w",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    if stream:
        chunks = events(response)
        (with_calls,) = [c for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
        assert with_calls["choices"][0]["delta"]["tool_calls"] == [{"index": 0, **expected}]
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [expected]}

    (body,) = fake.chat_bodies()
    assert offered(body)[0] == "get_weather" and "add" in offered(body)
    assert logged(calls) == []  # the round's MCP call was dropped with it
    # The turn is not over: nothing is kept until the client sends the tool's result.
    session = response.headers["X-Session-ID"]
    assert equipped.get(f"{BASE}/chat/sessions/{session}/history").json()["messages"] == []


def test_a_model_with_no_mcp_servers_is_offered_no_tools(
    client: TestClient, fake: OpenAIServer, calls: Path, project: Any
) -> None:
    response = configure(client, fake, [mcp_server(log=calls)], mcp_servers=[])
    assert response.status_code == 200, response.text
    fake.tool_calls = [ADD]  # a model that calls a tool it was not offered: no round runs
    response = chat(client, rag_enabled=False)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    (body,) = fake.chat_bodies()
    assert "tools" not in body and "tool_choice" not in body
    assert open_connections(client.app.state.mcp_pool) == 0  # type: ignore[attr-defined]
    assert logged(calls) == []

    response = configure(
        client, fake, [mcp_server("calc"), mcp_server("math")], mcp_servers=["math"]
    )
    assert response.status_code == 200, response.text
    chat(client, rag_enabled=False)
    names = offered(fake.chat_bodies()[-1])
    assert "add" in names and not any(name.startswith("calc") for name in names)


def test_mcp_config_is_validated(client: TestClient, fake: OpenAIServer, project: Any) -> None:
    unknown = configure(client, fake, [mcp_server()], mcp_servers=["calc", "nope"])
    assert unknown.status_code == 422
    assert "mcp_servers" in unknown.json()["detail"] and "'nope'" in unknown.json()["detail"]
    assert configure(client, fake, [mcp_server()], max_tool_rounds=0).status_code == 422
    assert configure(client, fake, [mcp_server()], max_tool_rounds=21).status_code == 422
    remote = {"name": "remote", "transport": "http"}
    assert configure(client, fake, [{**remote, "url": "http://127.0.0.1:9/mcp"}]).status_code == 200
    assert (
        configure(client, fake, [{**remote, "base_url": "http://127.0.0.1:9/mcp"}]).status_code
        == 200
    )
    missing = configure(client, fake, [remote])
    assert missing.status_code == 422 and "needs a url" in missing.json()["detail"]


def test_a_server_that_cannot_start_is_a_503_naming_it(
    client: TestClient, fake: OpenAIServer, project: Any
) -> None:
    ghost = mcp_server("ghost", command="no-such-program-lf")
    assert configure(client, fake, [ghost]).status_code == 200
    for stream in (False, True):
        response = chat(client, rag_enabled=False, stream=stream)
        assert response.status_code == 503, response.text
        assert response.json()["detail"] == (
            "MCP server 'ghost' could not start: no program 'no-such-program-lf' was found"
        )
    assert fake.chat_bodies() == []  # the model was not asked
    page = wait_for(client, 2, type="inference")
    assert all(e["summary"]["status"] == "error" for e in page["events"])

    # A model that does not use the server does not need it.
    assert configure(client, fake, [ghost], mcp_servers=[]).status_code == 200
    assert chat(client, rag_enabled=False).status_code == 200


def test_the_openai_client_runs_its_tool_and_gets_the_answer(
    live_server: str, fake: OpenAIServer, calls: Path
) -> None:
    with httpx.Client(base_url=live_server) as http:
        assert http.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        assert configure(http, fake, [mcp_server(log=calls)]).status_code == 200
    weather_call = {"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}
    fake.replies = [
        Reply(tool_calls=[weather_call]),  # the client's tool: back to the client
        Reply(tool_calls=[ADD]),  # an MCP tool: run by the server
        Reply(text="Sunny, and 2 + 3 is 5."),
        Reply(text="Checking.", tool_calls=[weather_call]),
    ]
    question = {"role": "user", "content": "Weather in Paris, and 2 + 3?"}
    base_url = f"{live_server}/v1/projects/acme/bot"
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="default", messages=[question], tools=[WEATHER], extra_body={"rag_enabled": False}
        )
        session = raw.headers["X-Session-ID"]
        first = raw.parse()
        assert first.choices[0].finish_reason == "tool_calls"
        message = first.choices[0].message
        assert message.tool_calls is not None
        (call,) = message.tool_calls
        assert call.id == "call_w" and call.type == "function"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}

        result = {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"}
        second = sdk.chat.completions.create(
            model="default",
            messages=[question, message.model_dump(exclude_none=True), result],
            tools=[WEATHER],
            extra_body={"rag_enabled": False},
            extra_headers={"X-Session-ID": session},
        )
        assert second.choices[0].message.content == "Sunny, and 2 + 3 is 5."
        assert second.choices[0].finish_reason == "stop"
        assert second.usage is not None and second.usage.total_tokens == 2 * (11 + 7)

        chunks = list(
            sdk.chat.completions.create(
                model="default",
                messages=[question],
                tools=[WEATHER],
                stream=True,
                extra_body={"rag_enabled": False},
                extra_headers={"X-No-Session": "1"},
            )
        )
        streamed = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
        assert [[(d.index, d.id, d.function and d.function.name) for d in s] for s in streamed] == [
            [(0, "call_w", "get_weather")]
        ]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Checking."
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

    sent = fake.chat_bodies()[1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_w"
    assert sent[-1] == {"role": "tool", "content": "Sunny, 24 C", "tool_call_id": "call_w"}
    assert logged(calls) == [{"tool": "add", "arguments": {"a": 2, "b": 3}}]
    with httpx.Client(base_url=base_url) as http:
        history = http.get(f"/chat/sessions/{session}/history").json()["messages"]
    assert history == [question, {"role": "assistant", "content": "Sunny, and 2 + 3 is 5."}]


def test_an_http_mcp_server_serves_tools(live_server: str, fake: OpenAIServer) -> None:
    """The server's own MCP endpoint (`/mcp`, streamable HTTP) as a project's MCP server."""
    own = {
        "name": "lf",
        "transport": "http",
        "url": f"{live_server}/mcp",
        "headers": {"X-Via": "t"},
    }
    with httpx.Client(base_url=live_server) as http:
        assert http.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        assert configure(http, fake, [own]).status_code == 200
        listing = {"name": "projects_list", "arguments": {"namespace": "acme"}}
        fake.replies = [Reply(tool_calls=[listing]), Reply(text="One project: bot.")]
        response = http.post(
            "/v1/projects/acme/bot/chat/completions",
            json={"messages": ASK, "rag_enabled": False},
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "One project: bot."
    first, second = fake.chat_bodies()
    assert {"projects_list", "rag_query", "dataset_create"} <= set(offered(first))
    result = json.loads(second["messages"][-1]["content"])
    assert [(p["namespace"], p["name"]) for p in result["projects"]] == [("acme", "bot")]
