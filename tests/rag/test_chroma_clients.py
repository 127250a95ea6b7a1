"""Owners of embedded Chroma clients: each closes its own, never another's."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest
from chromadb.api.shared_system_client import SharedSystemClient

from llamafarm.rag.stores import ChromaClients, ChromaServer, ChromaStore, release
from llamafarm.rag.stores.chroma_clients import SharedLock
from llamafarm.rag.stores.lexical import LexicalIndex

VECTOR = [1.0, 0.0]


def open_under(folder: Path) -> list[str]:
    """This process's open files under `folder`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since listed
        if target.startswith(str(folder)):
            found.append(target)
    return found


def chroma_has(folder: Path) -> bool:
    """Whether Chroma's process-wide cache holds a system of `folder`."""
    return str(folder) in SharedSystemClient._identifier_to_system


def filled(folder: Path, clients: ChromaClients) -> ChromaStore:
    store = ChromaStore(path=folder, collection_name="docs", clients=clients)
    store.replace({"dataset": "d"}, ["x"], ["hello"], [VECTOR], [{"dataset": "d"}])
    return store


def test_closing_an_owner_leaves_another_owners_store_of_the_same_folder_answering(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    first, second = ChromaClients(), ChromaClients()
    written = filled(folder, first)
    read = ChromaStore(path=folder, collection_name="docs", clients=second)
    assert read.count() == 1 and folder in first and folder in second

    system = SharedSystemClient._identifier_to_system[str(folder)]
    first.close()
    assert folder not in first
    assert SharedSystemClient._identifier_to_system.get(str(folder)) is system, "still open"
    assert read.count() == 1 and read.search(VECTOR, top_k=1)[0].id == "x"
    assert written.count() == 1  # a closed owner's store opens a client again when used
    first.close()

    second.close()
    assert not chroma_has(folder), "the folder's last owner closed: its system stops"
    gc.collect()  # Chroma lets one file go with a reference cycle
    assert open_under(folder) == []


def test_an_owner_closes_only_its_own_folders(tmp_path: Path) -> None:
    mine, theirs = ChromaClients(), ChromaClients()
    filled(tmp_path / "mine", mine)
    other = filled(tmp_path / "theirs", theirs)

    mine.close()
    assert not chroma_has(tmp_path / "mine")
    assert chroma_has(tmp_path / "theirs") and other.count() == 1
    theirs.close()


def test_a_release_reaches_every_owners_clients_and_they_reopen(tmp_path: Path) -> None:
    """A deleted store's files are closed whoever opened them; a store used again reopens."""
    folder = tmp_path / "project" / "stores" / "db"
    first, second = ChromaClients(), ChromaClients()
    written = filled(folder, first)
    read = ChromaStore(path=folder, collection_name="docs", clients=second)
    assert read.count() == 1

    release(tmp_path / "project")
    assert not chroma_has(folder)
    assert open_under(folder) == []
    assert read.count() == 1 and written.count() == 1
    first.close()
    second.close()


def test_another_process_write_reloads_the_folder_for_every_owner(tmp_path: Path) -> None:
    """A generation other than the one a system read closes it (as after another process's
    write), and each owner's next operation reads the files again."""
    folder = tmp_path / "store"
    first, second = ChromaClients(), ChromaClients()
    written = filled(folder, first)
    read = ChromaStore(path=folder, collection_name="docs", clients=second)
    assert read.count() == 1
    stale = SharedSystemClient._identifier_to_system[str(folder)]
    (folder / ".lf-generation").write_text("elsewhere")  # what another process's bump does
    written.replace({"dataset": "d"}, ["y"], ["world"], [VECTOR], [{"dataset": "d"}])
    assert SharedSystemClient._identifier_to_system[str(folder)] is not stale, "reloaded"
    assert read.count() == 1 and read.search(VECTOR, top_k=1)[0].id == "y"
    assert folder in second
    first.close()
    second.close()


def test_an_owner_keeps_one_server_client_and_closes_it(
    tmp_path: Path, chroma_server: tuple[str, int]
) -> None:
    """A server client is a system in Chroma's process-wide cache: one per owner and server,
    made on first use, gone with the owner."""
    before = len(SharedSystemClient._identifier_to_system)
    clients = ChromaClients()
    store = ChromaStore(
        path=tmp_path / "s",
        collection_name="no-leak",
        server=ChromaServer(*chroma_server),
        clients=clients,
    )
    store.count()
    opened = len(SharedSystemClient._identifier_to_system)
    assert opened > before
    for _ in range(3):
        store.replace({"dataset": "d"}, ["x"], ["hello"], [VECTOR], [{"dataset": "d"}])
        assert store.count() == 1
    assert len(SharedSystemClient._identifier_to_system) == opened
    store.drop()
    clients.close()
    assert len(SharedSystemClient._identifier_to_system) == before


def test_readers_share_the_process_lock_and_a_writer_waits_for_them() -> None:
    lock = SharedLock()
    inside = threading.Barrier(2, timeout=10)
    order: list[str] = []

    def read(name: str) -> None:
        with lock.shared():
            inside.wait()  # both readers are in at once, or this times out
            order.append(name)

    readers = [threading.Thread(target=read, args=(n,)) for n in ("a", "b")]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    assert sorted(order) == ["a", "b"]

    release = threading.Event()
    reading = threading.Event()

    def hold() -> None:
        with lock.shared():
            reading.set()
            release.wait(10)
            order.append("read")

    holder = threading.Thread(target=hold)
    holder.start()
    reading.wait(10)

    def write() -> None:
        with lock.exclusive():
            order.append("write")

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()  # it waits for the reader
    release.set()
    holder.join()
    writer.join(10)
    assert order[-2:] == ["read", "write"]


def test_the_writer_may_lock_again_and_a_reader_may_not_write() -> None:
    lock = SharedLock()
    with lock.exclusive(), lock.exclusive(), lock.shared():
        pass
    with (
        lock.shared(),
        lock.shared(),
        pytest.raises(RuntimeError, match="asked to write"),
        lock.exclusive(),
    ):
        pass
    with lock.exclusive():  # nothing was left held
        pass


def test_two_reads_of_a_store_run_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two sides of a hybrid query: a keyword search and a vector search of one store,
    each in its own thread, both inside the store at once."""
    clients = ChromaClients()
    store = filled(tmp_path, clients)
    store.search(VECTOR, top_k=1)  # opened and current: reads take the shared lock
    both = threading.Barrier(2, timeout=10)
    search = LexicalIndex.search

    def meeting(self: LexicalIndex, *args: object, **kwargs: object) -> object:
        both.wait()
        return search(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LexicalIndex, "search", meeting)
    found: list[object] = []
    threads = [
        threading.Thread(target=lambda: found.append(store.keyword_search("hello", top_k=1)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clients.close()
    assert [[hit.id for hit in hits] for hits in found] == [["x"], ["x"]]  # type: ignore[attr-defined]
