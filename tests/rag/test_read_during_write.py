"""Reads never wait on another process's write: a query issued while a large write holds the
store's lock answers before that write ends, from the index this process last loaded."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from llamafarm.rag.stores import ChromaClients, ChromaStore

VECTOR = [1.0, 0.0]
BIG = 1000
"""Chunks of the large write."""

# A writer process that stops inside its write, holding the store's lock, until told to go on:
# it says "writing" when there, reads a line, finishes, and says "done".
WRITER = """
import sys
from pathlib import Path
import numpy as np
from llamafarm.rag.stores import ChromaStore
from llamafarm.rag.stores.lexical import LexicalIndex

original = LexicalIndex.delete_where

def paused(self, *args, **kwargs):
    print("writing", flush=True)
    sys.stdin.readline()
    return original(self, *args, **kwargs)

LexicalIndex.delete_where = paused
store = ChromaStore(path=Path(sys.argv[1]), collection_name="docs")
dataset, count = sys.argv[2], int(sys.argv[3])
ids = [f"{dataset}-{i}" for i in range(count)]
vectors = np.random.default_rng(0).random((count, 2)).tolist()
metadatas = [{"dataset": dataset}] * count
store.replace({"dataset": dataset}, ids, [f"text {i}" for i in ids], vectors, metadatas)
print("done", flush=True)
"""


def write_while_querying(folder: Path, store: ChromaStore, dataset: str, count: int) -> list[str]:
    """Start a write of `count` chunks as `dataset`'s in another process, query while it is
    held inside the write, then let it finish: the events in order, with the query's ids."""
    events: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), dataset, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdin is not None and writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        query = threading.Thread(
            target=lambda: events.append(
                "answered " + ",".join(h.id for h in store.search(VECTOR, top_k=2))
            )
        )
        query.start()
        # Only a guard against a hang (the writer waits for us): the order is what is tested.
        query.join(timeout=60)
        events.append("write released")
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "done\n"
        events.append("write ended")
        query.join()
    assert writer.returncode == 0
    return events


def test_a_query_answers_while_another_process_writes(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    clients = ChromaClients()
    store = ChromaStore(path=folder, collection_name="docs", clients=clients)
    store.replace(
        {"dataset": "small"},
        ["a", "b"],
        ["alpha", "beta"],
        [VECTOR, [0.9, 0.1]],
        [{"dataset": "small"}] * 2,
    )
    assert [h.id for h in store.search(VECTOR, top_k=2)] == ["a", "b"]

    # The index this process holds is current: the query needs no lock.
    events = write_while_querying(folder, store, "big", BIG)
    assert events == ["answered a,b", "write released", "write ended"]

    # Now it is a write behind, and another write holds the lock: the query answers as of its
    # last load instead of waiting; that write removes the small dataset's chunks.
    events = write_while_querying(folder, store, "small", 0)
    assert events == ["answered a,b", "write released", "write ended"]

    # Once the writes are over, the next query reads the files again.
    assert store.count() == BIG
    hits = store.search(VECTOR, top_k=2)
    assert len(hits) == 2 and all(h.id.startswith("big-") for h in hits)
    clients.close()
