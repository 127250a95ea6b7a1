"""Stores on a server: a 503 naming a server that is not there or does not answer, never a 500
or a hang; a Chroma server store keeps nothing on disk, and projects sharing a server stay
apart."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from llamafarm.api import create_app
from llamafarm.errors import ConfigInvalid, Unavailable
from llamafarm.rag.stores import STORES, ChromaClients, ChromaServer, ChromaStore, QdrantStore
from llamafarm.rag.stores.base import server_collection
from llamafarm.rag.stores.lexical_pg import PostgresLexicalIndex
from llamafarm.settings import Settings
from llamafarm.state import StateDB

VECTOR = [1.0, 0.0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.fixture
def shared(chroma_server: tuple[str, int], postgres_state: StateDB) -> Iterator[ChromaClients]:
    """An owner's clients as a cluster's processes have them: the session's Chroma server as
    `LF_CHROMA_URL`, the BM25 index in PostgreSQL."""
    clients = ChromaClients(server=ChromaServer(*chroma_server), lexical=postgres_state.engine)
    yield clients
    clients.close()


def test_a_chroma_server_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    port = closed_port()
    store = STORES["ChromaStore"].from_config(
        path=tmp_path, database="db", config={"host": "127.0.0.1", "port": port}
    )
    assert isinstance(store, ChromaStore) and store.server == ChromaServer("127.0.0.1", port)
    with pytest.raises(Unavailable, match=f"Chroma server at 127.0.0.1:{port} cannot be reached"):
        store.count()


def test_a_chroma_server_that_does_not_answer_is_unavailable(
    tmp_path: Path, silent_server: int
) -> None:
    clients = ChromaClients(server=ChromaServer("127.0.0.1", silent_server), timeout=0.5)
    store = ChromaStore.from_config(path=tmp_path, database="db", config={}, clients=clients)
    with pytest.raises(Unavailable, match=f"127.0.0.1:{silent_server} cannot be reached"):
        store.search(VECTOR, top_k=1)


def test_a_qdrant_server_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    port = closed_port()
    store = STORES["QdrantStore"].from_config(
        path=tmp_path, database="db", config={"url": f"http://127.0.0.1:{port}", "timeout": 2}
    )
    assert isinstance(store, QdrantStore) and store.server is not None
    with pytest.raises(Unavailable, match=f"QdrantStore at http://127.0.0.1:{port}"):
        store.count()


def test_a_qdrant_server_store_is_named_for_its_project_and_keeps_bm25_in_postgresql(
    tmp_path: Path, postgres_state: StateDB
) -> None:
    clients = ChromaClients(lexical=postgres_state.engine)
    server = {"url": "http://127.0.0.1:6333"}
    first, second = (
        STORES["QdrantStore"].from_config(
            path=tmp_path / ns,
            database="main_db",
            config=server,
            clients=clients,
            scope=(ns, "bot"),
        )
        for ns in ("a", "b")
    )
    assert isinstance(first, QdrantStore) and isinstance(second, QdrantStore)
    # Two projects' `main_db` on one server are two collections.
    assert first.collection_name == server_collection(("a", "bot"), "main_db")
    assert second.collection_name == server_collection(("b", "bot"), "main_db")
    local = STORES["QdrantStore"].from_config(
        path=tmp_path / "local", database="main_db", config={}, clients=clients, scope=("a", "bot")
    )
    assert isinstance(local, QdrantStore)
    assert local.collection_name == "main_db" and local.lexical is None  # in its folder

    # The BM25 side of a server store is PostgreSQL's rows (no Qdrant server needed for it).
    PostgresLexicalIndex(postgres_state.engine, store=first.collection_name).upsert(
        ["c1"], ["Glaciers retreat in summer"], [{"dataset": "docs"}]
    )
    assert [hit.id for hit in first.keyword_search("glaciers", top_k=5)] == ["c1"]
    assert second.keyword_search("glaciers", top_k=5) == []
    assert not list(tmp_path.rglob("*.sqlite3"))


def test_a_chroma_server_store_keeps_its_chunks_on_the_server_and_nothing_on_disk(
    tmp_path: Path, shared: ChromaClients, postgres_state: StateDB
) -> None:
    config = {"collection_name": "kept-on-server"}
    scope = ("acme", "bot")
    first = ChromaStore.from_config(
        path=tmp_path / "a", database="db", config=config, clients=shared, scope=scope
    )
    first.replace({"dataset": "d"}, ["x"], ["hello E4417"], [VECTOR], [{"dataset": "d"}])
    # Another process's view: its own data dir and clients, the same server and database.
    other = ChromaClients(server=shared.server, lexical=StateDB(postgres_state.url).engine)
    second = ChromaStore.from_config(
        path=tmp_path / "b", database="db", config=config, clients=other, scope=scope
    )
    assert second.count() == 1 and second.search(VECTOR, top_k=1)[0].id == "x"
    assert [h.id for h in second.keyword_search("E4417", top_k=3)] == ["x"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    first.drop()
    assert second.count() == 0 and second.keyword_search("E4417", top_k=3) == []
    other.close()
    assert other.lexical is not None
    other.lexical.dispose()


def test_projects_sharing_a_server_keep_their_chunks_apart(
    tmp_path: Path, shared: ChromaClients
) -> None:
    config = {"collection_name": "documents"}  # the rag template's, in every project
    stores = [
        ChromaStore.from_config(
            path=tmp_path / "-".join(scope),
            database="db",
            config=config,
            clients=shared,
            scope=scope,
        )
        for scope in (("acme", "bot"), ("acme", "other"), ("beta", "bot"))
    ]
    for i, store in enumerate(stores):
        store.upsert([f"c{i}"], [f"shared word {i}"], [VECTOR], [{"dataset": "d"}])
    for i, store in enumerate(stores):
        assert store.count() == 1 and store.search(VECTOR, top_k=5)[0].id == f"c{i}"
        assert [h.id for h in store.keyword_search("shared word", top_k=5)] == [f"c{i}"]
        store.drop()


def test_server_collection_names_are_apart_and_within_chromas_rules() -> None:
    names = [
        server_collection(("a.b", "c"), "docs"),
        server_collection(("a", "b.c"), "docs"),
        server_collection(("ns_", "p-"), "docs"),
        server_collection(("x" * 64, "y" * 64), "z" * 512),
    ]
    assert len(set(names)) == len(names)
    assert names[0].startswith("a.b.c.docs-")
    for name in names:
        assert 3 <= len(name) <= 512 and ".." not in name
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", name)


def test_health_names_the_chroma_server(settings: Settings, chroma_url: str) -> None:
    up = settings.model_copy(update={"chroma_url": chroma_url})
    with TestClient(create_app(up), raise_server_exceptions=False) as client:
        body = client.get("/health").json()
    [component] = [c for c in body["components"] if c["name"] == "chroma_server"]
    assert component["status"] == "healthy" and chroma_url in component["message"]

    down_url = f"http://127.0.0.1:{closed_port()}"
    down = settings.model_copy(update={"chroma_url": down_url})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        response = client.get("/health")
    assert response.status_code == 503
    [component] = [c for c in response.json()["components"] if c["name"] == "chroma_server"]
    assert component["status"] == "unhealthy"
    assert f"Chroma server at {down_url} cannot be reached" in component["message"]


def test_a_query_while_the_chroma_server_is_down_is_a_503_naming_it(
    settings: Settings, silent_server: int
) -> None:
    url = f"http://127.0.0.1:{silent_server}"
    down = settings.model_copy(update={"chroma_url": url, "chroma_timeout": 0.5})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        assert client.post("/v1/projects/acme", json={"name": "bot"}).status_code == 201
        response = client.post("/v1/projects/acme/bot/rag/query", json={"query": "hello"})
    assert response.status_code == 503
    assert response.json()["detail"].startswith(
        f"Chroma server at 127.0.0.1:{silent_server} cannot be reached"
    )


@pytest.mark.parametrize(
    "url", ["chroma:8000", "ftp://chroma", "http://", "http://chroma:8000/api", "http://h:x"]
)
def test_a_bad_chroma_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="chroma_url"):
        Settings(chroma_url=url)


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
