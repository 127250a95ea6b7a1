"""Fixtures of the API tests that fuzz or check every route against a populated project."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat.openai_server import OpenAIServer


@pytest.fixture(scope="module")
def model() -> Iterator[OpenAIServer]:
    with OpenAIServer(text="Glaciers shrink because the ice melts.", chunk_size=8) as server:
        yield server


@pytest.fixture
def no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty Hugging Face cache (its path), and a Hub on a loopback port that refuses
    connections."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        cache = tmp_path / "hf-cache"
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        yield cache
