"""LlamaFarm 0.0.27's runtime keys and chat request fields, against a loopback OpenAI-compatible
server: a model's `default`, `extra_body`, `tools`, `rag_enabled`, `target_database`, the
`lemonade` provider, prompt `tool` messages; a request's `stop`, `seed`, `response_format`,
`n_ctx`, `rag_retrieval_strategy`, `include_sources`, `sources_limit`, `X-Active-Project`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from llamafarm.chat.providers.openai_compat import OpenAICompatibleProvider
from llamafarm.config.models import ModelConfig
from tests.api.test_chat import ASK, BASE, chat, events, fake
from tests.api.test_chat_tools import WEATHER
from tests.api.test_rag import FILES, ingest
from tests.chat.openai_server import OpenAIServer, Reply

__all__ = ["fake"]  # the fixture, imported for its use here

LOOKUP = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order of {{shop | the shop}} by its number.",
    "parameters": {
        "type": "object",
        "properties": {
            "number": {"type": "string", "description": "As {{shop | the shop}} prints it."}
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


def models(
    client: TestClient | httpx.Client, fake: OpenAIServer, *entries: Any, **runtime: Any
) -> Any:
    """PUT the project with these models (each pointed at the fake server)."""
    config = client.get(BASE).json()["project"]["config"]
    config["runtime"] = {
        "models": [{"provider": "openai", "base_url": fake.base_url, **e} for e in entries],
        **runtime,
    }
    return client.put(BASE, json={"config": config})


def full_model(fake: OpenAIServer) -> dict[str, Any]:
    """A model with every key of LlamaFarm's `runtime.models[]`."""
    return {
        "name": "lf",
        "description": "every key",
        "provider": "openai",
        "model": "fake-model",
        "base_url": fake.base_url,
        "api_key": "sk-test",
        "default": True,
        "prompt_format": "unstructured",
        "instructor_mode": "tools",
        "model_api_parameters": {"temperature": 0.3, "top_k": 7},
        "extra_body": {"n_ctx": 2048, "n_batch": 256, "cache_type_k": "q8_0", "top_k": 9},
        "encoder_config": {"max_length": 512, "task": "embedding"},
        "prompts": ["default"],
        "mcp_servers": [],
        "tool_call_strategy": "native_api",
        "tools": [LOOKUP],
        "keep_loaded": True,
        "rag_enabled": False,
        "target_database": "main_db",
    }


@pytest.mark.usefixtures("project")
def test_every_model_key_loads_round_trips_and_default_true_picks_the_model(
    client: TestClient, fake: OpenAIServer
) -> None:
    other = {"name": "other", "model": "other-model"}
    response = models(client, fake, other, full_model(fake))
    assert response.status_code == 200, response.text
    stored = client.get(BASE).json()["project"]["config"]["runtime"]["models"][1]
    assert {k: v for k, v in stored.items() if k in full_model(fake)} == full_model(fake)
    listed = client.get(f"{BASE}/models").json()["models"]
    assert [m["name"] for m in listed if m["default"]] == ["lf"]
    assert chat(client).json()["model"] == "fake-model"  # `default: true` is the default

    assert models(client, fake, other, full_model(fake), default_model="other").status_code == 200
    assert chat(client).json()["model"] == "other-model"  # default_model wins over it


@pytest.mark.usefixtures("project")
def test_target_database_must_name_a_database(client: TestClient, fake: OpenAIServer) -> None:
    entry = {"name": "m", "model": "x", "target_database": "nowhere"}
    response = models(client, fake, entry)
    assert response.status_code == 422
    assert "runtime.models[0].target_database" in response.json()["detail"]
    assert "nowhere" in response.json()["detail"]


@pytest.mark.usefixtures("project")
def test_extra_body_and_request_fields_reach_the_server_through_the_openai_client(
    live_server: str, fake: OpenAIServer
) -> None:
    with httpx.Client(base_url=live_server) as http:
        assert http.post("/v1/projects/acme", json={"name": "bot"}).status_code in (201, 409)
        assert models(http, fake, full_model(fake)).status_code == 200
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    base_url = f"{live_server}{BASE}"
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as sdk:
        answer = sdk.chat.completions.create(
            model="lf",
            messages=ASK,  # type: ignore[arg-type]
            stop=["\n\n", "END"],
            seed=42,
            response_format=response_format,  # type: ignore[arg-type]
            extra_body={"n_ctx": 4096},
            extra_headers={"X-Active-Project": "acme/bot"},
        )
        assert answer.choices[0].message.content == fake.text
        sent = fake.chat_bodies()[-1]
        assert sent["stop"] == ["\n\n", "END"] and sent["seed"] == 42
        assert sent["response_format"] == response_format
        # model_api_parameters, then extra_body over them, then the request's n_ctx
        assert sent["temperature"] == 0.3 and sent["top_k"] == 9
        assert sent["n_batch"] == 256 and sent["cache_type_k"] == "q8_0"
        assert sent["n_ctx"] == 4096

        sdk.chat.completions.create(
            model="lf",
            messages=ASK,
            stop="END",
            response_format={"type": "text"},  # type: ignore[arg-type]
        )
        sent = fake.chat_bodies()[-1]
        assert sent["stop"] == ["END"] and "response_format" not in sent and "seed" not in sent
        assert sent["n_ctx"] == 2048  # the config's


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize(
    "body",
    [
        {"response_format": {"type": "json_schema"}},
        {"response_format": {"type": "yaml"}},
        {"stop": [""]},
        {"stop": ["x"] * 17},
        {"seed": 2**64},
        {"n_ctx": 0},
        {"sources_limit": 51},
        {"rag_retrieval_strategy": ""},
    ],
)
def test_bad_request_fields_are_422s(
    client: TestClient, fake: OpenAIServer, body: dict[str, Any]
) -> None:
    assert models(client, fake, {"name": "m", "model": "x"}).status_code == 200
    response = chat(client, **body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


@pytest.mark.usefixtures("project")
def test_configured_tools_are_offered_and_their_calls_go_back_to_the_client(
    client: TestClient, fake: OpenAIServer
) -> None:
    assert models(client, fake, full_model(fake)).status_code == 200
    fake.replies = [Reply(tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": {}}])]
    response = chat(client, tools=[WEATHER], variables={"shop": "Acme"})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "lookup_order"
    offered = {t["function"]["name"]: t["function"] for t in fake.chat_bodies()[-1]["tools"]}
    assert set(offered) == {"get_weather", "lookup_order"}
    assert offered["lookup_order"]["description"] == "Find an order of Acme by its number."
    number = offered["lookup_order"]["parameters"]["properties"]["number"]
    assert number == {"type": "string", "description": "As Acme prints it."}


@pytest.mark.usefixtures("project")
def test_prompt_sets_take_tool_messages(client: TestClient, fake: OpenAIServer) -> None:
    config = client.get(BASE).json()["project"]["config"]
    config["prompts"] = [
        {
            "name": "default",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "tool", "content": '{"stock": 3}', "tool_call_id": "seed_1"},
            ],
        }
    ]
    config["runtime"] = {
        "models": [
            {
                "name": "m",
                "provider": "openai",
                "model": "x",
                "base_url": fake.base_url,
                "prompts": ["default"],
            }
        ]
    }
    assert client.put(BASE, json={"config": config}).status_code == 200
    assert chat(client, rag_enabled=False).status_code == 200
    sent = fake.chat_bodies()[-1]["messages"]
    assert {"role": "tool", "content": '{"stock": 3}', "tool_call_id": "seed_1"} in sent


@pytest.mark.usefixtures("project")
def test_model_rag_defaults_and_the_request_over_them(
    client: TestClient, fake: OpenAIServer
) -> None:
    ingest(client, FILES)
    config = client.get(BASE).json()["project"]["config"]
    spare = config["rag"]["databases"][0] | {"name": "spare_db"}
    assert client.post(f"{BASE}/rag/databases", json=spare).status_code < 300
    quiet = {"name": "quiet", "model": "x", "rag_enabled": False}
    spare_model = {"name": "spare", "model": "x", "target_database": "spare_db"}
    assert models(client, fake, quiet, spare_model).status_code == 200

    assert chat(client, model="quiet").json()["sources"] == []  # the model's rag_enabled
    assert chat(client, model="quiet", rag_enabled=True).json()["sources"]  # the request's
    assert chat(client, model="spare").json()["sources"] == []  # its empty database
    searched = chat(client, model="spare", database="main_db").json()["sources"]
    assert searched[0]["source"] == "glaciers.md"


@pytest.mark.usefixtures("project")
def test_include_sources_sends_the_sources_event_first(
    client: TestClient, fake: OpenAIServer
) -> None:
    ingest(client, FILES)
    assert models(client, fake, {"name": "m", "model": "x"}).status_code == 200
    response = chat(
        client,
        stream=True,
        include_sources=True,
        sources_limit=1,
        rag_top_k=3,
        rag_retrieval_strategy="basic_search",
    )
    assert response.status_code == 200, response.text
    first, *rest = events(response)
    assert first["type"] == "sources" and len(first["sources"]) == 1
    (hit,) = first["sources"]
    assert hit["source"] == "glaciers.md" and "Alpine glaciers retreat" in hit["content"]
    assert isinstance(hit["score"], float) and hit["metadata"]["source"] == "glaciers.md"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in rest) == fake.text
    assert len(rest[0]["sources"]) == 1  # sources_limit caps our own field too
    # the model saw all three chunks, not only the one shown
    system = " ".join(m["content"] for m in fake.chat_bodies()[-1]["messages"])
    assert "[3]" in system

    plain = events(chat(client, stream=True))
    assert "type" not in plain[0]
    off = events(chat(client, stream=True, include_sources=True, rag_enabled=False))
    assert "type" not in off[0]  # no event when RAG is off
    unknown = chat(client, rag_retrieval_strategy="nope")
    assert 400 <= unknown.status_code < 500 and "nope" in unknown.json()["detail"]


@pytest.mark.usefixtures("project")
def test_lemonade_is_an_openai_compatible_server(client: TestClient, fake: OpenAIServer) -> None:
    lemon = {
        "name": "lemon",
        "provider": "lemonade",
        "model": "user.Qwen3-4B",
        "lemonade": {"backend": "llamacpp", "port": 11534, "context_size": 32768},
    }
    assert models(client, fake, lemon).status_code == 200
    response = chat(client, rag_enabled=False)
    assert response.status_code == 200, response.text
    assert fake.requests[-1].headers["authorization"] == "Bearer lemonade"

    default = ModelConfig(name="l", provider="lemonade", model="m", lemonade={"port": 11535})
    with OpenAICompatibleProvider(default) as provider:
        assert provider.base_url == "http://127.0.0.1:11535/api/v1"
    with OpenAICompatibleProvider(ModelConfig(name="l", provider="lemonade", model="m")) as p:
        assert p.base_url == "http://127.0.0.1:11534/api/v1"


@pytest.mark.usefixtures("project")
def test_the_flat_runtime_form_takes_the_same_keys(client: TestClient, fake: OpenAIServer) -> None:
    config = client.get(BASE).json()["project"]["config"]
    config["runtime"] = {
        "provider": "openai",
        "model": "flat-model",
        "base_url": fake.base_url,
        "instructor_mode": "tools",
        "extra_body": {"n_ctx": 1024},
        "tools": [LOOKUP],
        "rag_enabled": False,
    }
    assert client.put(BASE, json={"config": config}).status_code == 200
    body = chat(client).json()
    assert body["model"] == "flat-model" and body["sources"] == []
    sent = fake.chat_bodies()[-1]
    assert sent["n_ctx"] == 1024 and sent["tools"][0]["function"]["name"] == "lookup_order"
    assert json.loads(json.dumps(sent["messages"]))[-1] == ASK[0]


CALL_TEXT = (
    'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
)


@pytest.mark.usefixtures("project")
def test_prompt_based_tools_are_described_in_the_prompt_and_read_from_the_text(
    client: TestClient, fake: OpenAIServer
) -> None:
    prompted = {"name": "m", "model": "x", "tool_call_strategy": "prompt_based"}
    assert models(client, fake, prompted).status_code == 200
    fake.replies = [Reply(text=CALL_TEXT)]
    body = chat(client, tools=[WEATHER], rag_enabled=False).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    sent = fake.chat_bodies()[-1]
    assert "tools" not in sent
    assert (
        "get_weather" in sent["messages"][0]["content"]
        and "<tool_call>" in (sent["messages"][0]["content"])
    )

    # the result goes back as text; the model's answer ends the turn
    assistant = choice["message"]
    result = {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 C"}
    done = chat(
        client,
        messages=[*ASK, assistant, result],
        tools=[WEATHER],
        rag_enabled=False,
    ).json()
    assert done["choices"][0]["message"]["content"] == fake.text
    sent = fake.chat_bodies()[-1]["messages"]
    assert sent[-2]["role"] == "assistant" and "<tool_call>" in sent[-2]["content"]
    assert sent[-1] == {
        "role": "user",
        "content": f"Result of tool call {call['id']}:\nSunny, 24 C",
    }

    # streamed: the text until the call goes out, the call's text never does
    fake.replies = [Reply(text=CALL_TEXT)]
    frames = events(chat(client, tools=[WEATHER], rag_enabled=False, stream=True))
    said = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames)
    assert said.strip() == "Let me check."
    calls = [c for f in frames for c in f["choices"][0]["delta"].get("tool_calls") or []]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"
