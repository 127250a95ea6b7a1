"""Chat requests are capped in messages and characters: 422 `{"detail"}` past each cap, and a
request at the cap is still answered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from llamafarm.api.chat_request import MAX_CHARACTERS, MAX_MESSAGES
from tests.api.test_chat import chat, use
from tests.api.test_chat import fake as fake
from tests.chat.openai_server import OpenAIServer


def turns(count: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"question {i}"} for i in range(count)]


@pytest.mark.usefixtures("project")
def test_message_count_is_capped(client: TestClient, fake: OpenAIServer) -> None:
    use(client, fake)
    served = chat(client, messages=turns(MAX_MESSAGES), rag_enabled=False)
    assert served.status_code == 200, served.text
    refused = chat(client, messages=turns(MAX_MESSAGES + 1), rag_enabled=False)
    assert refused.status_code == 422
    assert "messages" in refused.json()["detail"]
    assert str(MAX_MESSAGES) in refused.json()["detail"]


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("parts", [False, True])
def test_characters_are_capped(client: TestClient, fake: OpenAIServer, parts: bool) -> None:
    use(client, fake)

    def messages(total: int) -> list[dict[str, Any]]:
        half = total // 2
        text = "y" * (total - half)
        content: Any = [{"type": "text", "text": text}] if parts else text
        return [
            {"role": "user", "content": "x" * half},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "f", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "user", "content": content},
        ]

    at_cap = chat(client, messages=messages(MAX_CHARACTERS - 2), rag_enabled=False)
    assert at_cap.status_code == 200, at_cap.text[:300]
    refused = chat(client, messages=messages(MAX_CHARACTERS - 1), rag_enabled=False)
    assert refused.status_code == 422
    assert f"at most {MAX_CHARACTERS} are accepted" in refused.json()["detail"]


@pytest.mark.usefixtures("project")
def test_rag_queries_are_capped(client: TestClient, fake: OpenAIServer) -> None:
    use(client, fake)
    refused = chat(client, rag_queries=["q" * 10_001])
    assert refused.status_code == 422
    assert "rag_queries" in refused.json()["detail"]
