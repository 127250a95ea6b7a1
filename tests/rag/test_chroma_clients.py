"""Owners of embedded Chroma clients: each closes its own, never another's."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from chromadb.api.shared_system_client import SharedSystemClient

from llamafarm.rag.stores import ChromaClients, ChromaServer, ChromaStore, release

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
