"""Stores on a server that is not there: a 503 naming it, never a 500 or a hang."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llamafarm.errors import ConfigInvalid, Unavailable
from llamafarm.rag.stores import STORES, ChromaStore, QdrantStore


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_chroma_server_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    port = closed_port()
    store = STORES["ChromaStore"].from_config(
        path=tmp_path, database="db", config={"host": "127.0.0.1", "port": port}
    )
    assert isinstance(store, ChromaStore) and store.server == ("127.0.0.1", port)
    with pytest.raises(Unavailable, match=f"Chroma server at 127.0.0.1:{port} cannot be reached"):
        store.count()


def test_a_qdrant_server_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    port = closed_port()
    store = STORES["QdrantStore"].from_config(
        path=tmp_path, database="db", config={"url": f"http://127.0.0.1:{port}", "timeout": 2}
    )
    assert isinstance(store, QdrantStore) and store.server is not None
    with pytest.raises(Unavailable, match=f"QdrantStore at http://127.0.0.1:{port}"):
        store.count()


def test_a_chroma_server_store_keeps_its_chunks_on_the_server(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    host, port = chroma_server
    config = {"host": host, "port": port, "collection_name": "kept-on-server"}
    first = ChromaStore.from_config(path=tmp_path / "a", database="db", config=config)
    first.replace({"dataset": "d"}, ["x"], ["hello"], [[1.0, 0.0]], [{"dataset": "d"}])
    # Another process's view: another folder, the same server collection.
    second = ChromaStore.from_config(path=tmp_path / "b", database="db", config=config)
    assert second.count() == 1 and second.search([1.0, 0.0], top_k=1)[0].id == "x"
    first.drop()
    assert second.count() == 0


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("ChromaStore", {"host": "h", "port": "80"}, "port a TCP port"),
        ("ChromaStore", {"colour": "red"}, r"unknown keys \['colour'\]"),
        ("QdrantStore", {"port": True, "host": "h"}, "port must be a int"),
        ("QdrantStore", {"path": "/tmp/q"}, "lives in the project's folder"),
        ("QdrantStore", {"distance": "Manhattan"}, "distance 'Manhattan' is not one of"),
    ],
)
def test_bad_store_configs(kind: str, config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        STORES[kind].from_config(path=Path("/nonexistent"), database="db", config=config)
