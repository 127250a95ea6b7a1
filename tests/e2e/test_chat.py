"""The official `openai` client against a real server and the bundled model."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

import httpx
import openai
import pytest

from tests.chat.openai_server import OpenAIServer
from tests.e2e.conftest import LF, Server
from tests.e2e.test_cli import lf

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def server(start_server: Any) -> Server:
    started: Server = start_server(LF_EMBEDDED_WORKER="false")
    created = httpx.post(
        f"{started.url}/v1/projects/acme", json={"name": "talk", "config_template": "server"}
    )
    assert created.status_code == 201, created.text
    return started


def base_url(server: Server) -> str:
    return f"{server.url}/v1/projects/acme/talk"


def test_sync_client_with_a_session(server: Server) -> None:
    client = openai.OpenAI(base_url=base_url(server), api_key="unused", max_retries=0)
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="default", messages=ASK, max_tokens=16, temperature=0
        )
        session = raw.headers["X-Session-ID"]
        first = raw.parse()
        assert first.object == "chat.completion"
        assert first.id.startswith("chatcmpl-")
        assert isinstance(first.created, int) and first.created > 1_700_000_000
        assert first.choices[0].index == 0
        assert first.choices[0].message.role == "assistant"
        assert first.choices[0].message.content
        assert first.choices[0].finish_reason in ("stop", "length")
        assert first.usage is not None and first.usage.completion_tokens > 0

        second = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "And goodbye?"}],
            max_tokens=16,
            extra_headers={"X-Session-ID": session},
        )
        assert second.choices[0].message.content

    history = httpx.get(f"{base_url(server)}/chat/sessions/{session}/history").json()
    roles = [m["role"] for m in history["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert history["messages"][0]["content"] == ASK[0]["content"]
    assert history["messages"][3]["content"] == second.choices[0].message.content


def test_sync_client_streams(server: Server) -> None:
    with openai.OpenAI(base_url=base_url(server), api_key="unused", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="default",
                messages=ASK,
                max_tokens=24,
                stream=True,
                extra_headers={"X-No-Session": "1"},
            )
        )
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()


def test_async_client(server: Server) -> None:
    async def talk() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=base_url(server), api_key="unused", max_retries=0
        ) as client:
            whole = await client.chat.completions.create(
                model="default", messages=ASK, max_tokens=12
            )
            pieces = []
            stream = await client.chat.completions.create(
                model="default", messages=ASK, max_tokens=12, stream=True
            )
            async for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")
            return whole.choices[0].message.content or "", "".join(pieces)

    whole, streamed = asyncio.run(talk())
    assert whole.strip() and streamed.strip()


def test_models_and_unknown_model(server: Server) -> None:
    listed = httpx.get(f"{base_url(server)}/models").json()
    assert listed["total"] == 1
    assert listed["models"][0] == {
        "name": "default",
        "provider": "universal",
        "model": "SmolLM2-135M-Instruct",
        "base_url": None,
        "default": True,
        "description": "SmolLM2-135M-Instruct (bundled GGUF, runs on the CPU)",
    }
    client = openai.OpenAI(base_url=base_url(server), api_key="unused", max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="nope", messages=ASK)
    assert refused.value.body == {"detail": "Unknown model 'nope' (valid: default)"}


def test_cli_chat_streams_an_answer(server: Server) -> None:
    said = lf(server.url, "chat", "acme/talk", "Say hello.", "--no-rag")
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip()
    # No message: a conversation on stdin, one session for all its turns, until end of input.
    talk = subprocess.run(
        [LF, "--server-url", server.url, "chat", "--project", "acme/talk", "--no-rag"],
        input="Say hi.\nSay bye.\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert talk.returncode == 0, talk.stderr
    assert talk.stdout.count("you>") == 3
    unknown = lf(server.url, "chat", "acme/talk", "Hi", "--model", "nope")
    assert unknown.returncode == 1
    assert "Unknown model 'nope' (valid: default)" in unknown.stderr


def test_a_client_that_leaves_mid_stream_stops_the_model(server: Server) -> None:
    with OpenAIServer(text="word " * 400, chunk_size=5, delay=0.05) as fake:
        config = httpx.get(base_url(server)).json()["project"]["config"]
        original = config["runtime"]
        config["runtime"] = {
            "provider": "openai",
            "model": "fake",
            "base_url": fake.base_url,
        }
        updated = httpx.put(base_url(server), json={"config": config})
        assert updated.status_code == 200, updated.text
        try:
            body = {"messages": ASK, "stream": True}
            with httpx.stream(
                "POST", f"{base_url(server)}/chat/completions", json=body, timeout=30
            ) as response:
                session = response.headers["X-Session-ID"]
                frames = response.iter_lines()
                assert next(frames).startswith("data: ")
            # The server noticed, stopped reading from the model server, and kept no half turn.
            assert fake.client_gone.wait(10)
            assert fake.chunks_sent < 400
            history = httpx.get(f"{base_url(server)}/chat/sessions/{session}/history").json()
            assert history == {"messages": []}
            fake.text = "Short answer."
            again = httpx.post(
                f"{base_url(server)}/chat/completions",
                json={"messages": ASK},
                headers={"X-Session-ID": session},
                timeout=30,
            )
            assert again.status_code == 200, again.text
            assert again.json()["choices"][0]["message"]["content"] == "Short answer."
        finally:
            config["runtime"] = original
            httpx.put(base_url(server), json={"config": config}).raise_for_status()
