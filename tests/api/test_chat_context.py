"""A long session never overflows the model's context: against a loopback OpenAI-compatible
server whose model has a small `context_window`, the oldest turns are dropped, the answer keeps
coming, and the response and the event log say what was dropped."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm import bundled
from llamafarm.chat import sessions
from llamafarm.chat.providers.base import MESSAGE_TOKENS, Message, estimate_tokens
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from tests.api.test_chat import BASE, chat, events, fake, use
from tests.api.test_events import detail, wait_for
from tests.chat.openai_server import OpenAIServer

__all__ = ["fake"]  # the fixture, imported for its use here

WINDOW = 600
ANSWER = 64


def question(number: int) -> str:
    return f"Question {number}: " + "tell me more about glaciers and the ice ages. " * 3


def sent_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt's tokens as the estimate counts them."""
    return sum(estimate_tokens(m["content"]) + MESSAGE_TOKENS for m in messages)


@pytest.mark.usefixtures("project")
def test_a_long_session_keeps_answering_and_says_what_it_dropped(
    client: TestClient, fake: OpenAIServer
) -> None:
    use(client, fake, context_window=WINDOW)
    session: dict[str, str] = {}
    for number in range(30):
        response = chat(
            client,
            headers=session,
            messages=[{"role": "user", "content": question(number)}],
            max_tokens=ANSWER,
            rag_enabled=False,
        )
        assert response.status_code == 200, response.text
        session = {"X-Session-ID": response.headers["X-Session-ID"]}
        sent = fake.chat_bodies()[-1]["messages"]
        assert sent_tokens(sent) <= WINDOW - ANSWER
        assert sent[-1] == {"role": "user", "content": question(number)}
        assert sent[0]["role"] == "system"  # the project's prompt is always kept

    # 30 questions and answers never fit in 600 tokens: only the newest turns went, whole
    users = [m["content"] for m in sent if m["role"] == "user"]
    kept = len(users) - 1
    assert 0 < kept < 29
    assert users == [question(n) for n in range(29 - kept, 30)]
    assistants = [m for m in sent if m["role"] == "assistant"]
    assert len(assistants) == kept
    assert response.headers["X-LF-Context-Dropped"] == f"turns={29 - kept}; chunks=0"

    # the whole session is still kept: only what the model sees is cut
    history = client.get(f"{BASE}/chat/sessions/{session['X-Session-ID']}/history").json()
    assert len(history["messages"]) == 60

    page = wait_for(client, 30, type="inference")
    event = detail(client, page["events"][0]["event_id"])
    assert event["data"]["context"]["window"] == WINDOW
    assert event["data"]["context"]["dropped_turns"] == 29 - kept
    assert event["data"]["context"]["dropped_chunks"] == 0
    assert "context_fitted" in [sub["name"] for sub in event["sub_events"]]

    streamed = chat(
        client,
        headers=session,
        messages=[{"role": "user", "content": question(30)}],
        max_tokens=ANSWER,
        rag_enabled=False,
        stream=True,
    )
    assert streamed.status_code == 200
    assert events(streamed)[-1]["choices"][0]["finish_reason"] == "stop"
    assert streamed.headers["X-LF-Context-Dropped"].startswith("turns=")


@pytest.mark.usefixtures("project")
def test_a_short_session_drops_nothing_and_says_nothing(
    client: TestClient, fake: OpenAIServer
) -> None:
    use(client, fake, model_api_parameters={"n_ctx": 4096})
    response = chat(client, rag_enabled=False)
    assert response.status_code == 200, response.text
    assert "X-LF-Context-Dropped" not in response.headers
    assert fake.chat_bodies()[-1]["n_ctx"] == 4096  # still sent as it was
    page = wait_for(client, 1, type="inference")
    context = detail(client, page["events"][0]["event_id"])["data"]["context"]
    assert context["window"] == 4096 and context["dropped_turns"] == 0


@pytest.mark.usefixtures("project")
def test_a_message_too_long_for_the_window_is_a_400_naming_both_numbers(
    client: TestClient, fake: OpenAIServer
) -> None:
    use(client, fake, context_window=256)
    text = "glacier " * 300  # 2,400 bytes: 800 tokens as estimated
    response = chat(client, messages=[{"role": "user", "content": text}], rag_enabled=False)
    assert response.status_code == 400
    detail_text = response.json()["detail"]
    assert f"{estimate_tokens(text) + MESSAGE_TOKENS} tokens" in detail_text
    assert "window of 256 tokens" in detail_text
    assert fake.chat_bodies() == []  # the model was never asked


@pytest.mark.usefixtures("project")
def test_a_remote_model_without_a_window_is_sent_everything(
    client: TestClient, fake: OpenAIServer
) -> None:
    use(client, fake)
    text = "glacier " * 300
    response = chat(client, messages=[{"role": "user", "content": text}], rag_enabled=False)
    assert response.status_code == 200, response.text
    assert "X-LF-Context-Dropped" not in response.headers
    assert fake.chat_bodies()[-1]["messages"][-1]["content"] == text


@pytest.mark.usefixtures("project")
def test_retrieved_chunks_are_capped_at_their_share(client: TestClient, fake: OpenAIServer) -> None:
    from tests.api.test_rag import FILES, ingest

    ingest(client, FILES)
    use(client, fake, context_window=400, rag_context_share=0.05)
    response = chat(client, max_tokens=32, rag_top_k=3)
    assert response.status_code == 200, response.text
    dropped = response.headers["X-LF-Context-Dropped"]
    assert dropped.startswith("turns=0; chunks=") and dropped != "turns=0; chunks=0"
    sent = fake.chat_bodies()[-1]["messages"]
    assert not any("Excerpts from the project's documents" in m["content"] for m in sent)
    assert response.json()["sources"] == []  # only what the model saw is cited


@pytest.mark.slow
@pytest.mark.usefixtures("project")
def test_a_200_turn_session_on_the_bundled_model_keeps_answering(
    client: TestClient, settings: Settings
) -> None:
    """200 turns are put in the session directly (200 real generations would take minutes on
    a small machine; what the model sees is the same); then real turns are asked on it."""
    project = client.get(BASE).json()["project"]
    config = project["config"]
    config["runtime"] = {
        "models": [
            {
                "name": "local",
                "provider": "universal",
                "model": bundled.CHAT,
                "extra_body": {"n_ctx": 512},
            }
        ]
    }
    assert client.put(BASE, json={"config": config}).status_code == 200
    db = StateDB(settings.state_url)
    session_id = sessions.open_session(
        db, namespace="acme", project="bot", session_id=None, ttl=3600
    )
    turns = [
        [
            Message("user", question(number)),
            Message("assistant", f"Answer {number}: glaciers grow in cold years."),
        ]
        for number in range(200)
    ]
    # one write: the same rows as 200 turns' appends
    sessions.append(
        db,
        namespace="acme",
        project="bot",
        session_id=session_id,
        messages=[message for turn in turns for message in turn],
    )
    db.close()
    for number in range(200, 203):
        response = chat(
            client,
            headers={"X-Session-ID": session_id},
            messages=[{"role": "user", "content": question(number)}],
            max_tokens=8,
            rag_enabled=False,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["choices"][0]["message"]["content"]
        # llama.cpp's own count of what it read, and the room kept for the answer
        assert body["usage"]["prompt_tokens"] + 8 <= 512
        dropped = int(response.headers["X-LF-Context-Dropped"].split(";")[0].split("=")[1])
        assert 190 <= dropped <= number  # most turns dropped (all of them in a small slot)
    page = wait_for(client, 3, type="inference")
    context = detail(client, page["events"][0]["event_id"])["data"]["context"]
    assert 0 < context["window"] <= 512
    assert context["prompt_tokens"] >= body["usage"]["prompt_tokens"]
