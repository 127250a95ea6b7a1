"""Big files stream: parsed, embedded and stored a batch at a time, progress as they are stored,
the worker's memory flat in the file's size, and a cancel half-way keeps nothing of the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from llamafarm.config.models import Database, DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.ingest.pipeline import Outcome, Plan, process_file
from llamafarm.ingest.sandbox import Cancelled, ParseLimits, ParsePool
from llamafarm.rag.stores import ChromaClients, create_store
from llamafarm.state import FileState

PARAGRAPH = (
    "Paragraph {i} of the orchard log. The pickers counted {n} crates of apples on row {i} "
    "and wrote down the weather, the ripeness of the fruit and what the next day needs."
)
CHUNK = {"chunk_size": 4000, "chunk_overlap": 0, "chunk_strategy": "paragraphs"}


class CountingEmbedder:
    """Four numbers per text: what the store needs, at no cost, so the test measures the
    pipeline and not a model."""

    name = "counting"
    dimension = 4

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(len(t)), float(t.count("e")), 1.0, 0.0] for t in texts]

    def fingerprint(self) -> str:
        return "counting-4"

    def check(self) -> None:
        return None


@pytest.fixture(scope="module")
def big_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 24 MiB of paragraphs."""
    path = tmp_path_factory.mktemp("big") / "orchard.txt"
    with path.open("w") as out:
        i = 0
        while out.tell() < 24 << 20:
            out.write("\n\n".join(PARAGRAPH.format(i=i + k, n=(i + k) * 7) for k in range(1000)))
            out.write("\n\n")
            i += 1000
    return path


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    sandbox = ParsePool(
        ParseLimits(processes=1, timeout_s=120, max_mb=512, max_unzipped_mb=64, max_zip_ratio=100)
    )
    yield sandbox
    sandbox.close()


@pytest.fixture
def chroma() -> Iterator[ChromaClients]:
    clients = ChromaClients()
    yield clients
    clients.close()


def plan() -> Plan:
    strategy = DataProcessingStrategy(
        name="s", parsers=[ParserConfig(type="TextParser", config=CHUNK)]
    )
    database = Database(
        name="db",
        type="ChromaStore",
        config={"collection_name": "orchard"},
        # what the index records as its builder; the chunks are embedded by CountingEmbedder
        embedding_strategies=[{"name": "e", "type": "UniversalEmbedder", "config": {}}],
    )
    return Plan(strategy, database, CountingEmbedder())


class PeakRss:
    """The process's largest resident size while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)


def ingest(
    path: Path, pool: ParsePool, chroma: ChromaClients, tmp_path: Path, **more: Any
) -> Outcome:
    return process_file(
        plan=plan(),
        dataset="d",
        path=path,
        filename=path.name,
        file_hash=path.name[0] * 64,
        stored_fingerprint=None,
        project_dir=tmp_path,
        chroma=chroma,
        parsing=pool,
        **{"should_stop": lambda: False, **more},
    )


@pytest.mark.slow
def test_a_big_text_file_is_stored_in_batches_with_flat_memory(
    big_text: Path, pool: ParsePool, chroma: ChromaClients, tmp_path: Path
) -> None:
    # A small file first: what the store loads on first use is not the big file's cost.
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join(PARAGRAPH.format(i=i, n=i) for i in range(100)))
    assert ingest(small, pool, chroma, tmp_path).state == FileState.SUCCESS
    progress: list[int] = []
    with PeakRss() as rss:
        outcome = ingest(big_text, pool, chroma, tmp_path, on_stored=progress.append)
    assert outcome.state == FileState.SUCCESS
    size = big_text.stat().st_size
    assert outcome.chunks >= size // 4000
    # Progress counted batch by batch, as the chunks were stored.
    assert progress == sorted(progress) and len(progress) >= outcome.chunks // 256
    assert progress[0] == 256 and progress[-1] == outcome.chunks
    store = create_store(plan().database, project_dir=tmp_path, clients=chroma)
    assert store.count({"file_hash": "o" * 64}) == outcome.chunks
    # Held whole (its bytes, its text, the cleaned text, the chunks) the file took four times
    # its size and more in the worker; streamed, the worker holds a few batches, and what
    # grows is the store's own index (measured: 35 MiB for 20 MiB, 28 MiB for 10 MiB).
    grown = (rss.peak - rss.baseline) / 2**20
    assert grown < 3 * (size >> 20), f"the worker grew by {grown:.0f} MiB for {size >> 20} MiB"


def test_a_cancel_half_way_keeps_nothing_of_the_run(
    big_text: Path, pool: ParsePool, chroma: ChromaClients, tmp_path: Path
) -> None:
    store = create_store(plan().database, project_dir=tmp_path, clients=chroma)
    # The file's chunks of an earlier strategy stay until a run replaces them whole.
    earlier = {"dataset": "d", "file_hash": "o" * 64}
    store.upsert(["old"], ["Earlier chunk"], [[1.0, 0.0, 0.0, 0.0]], [earlier])
    heard: list[object] = []
    with pytest.raises(Cancelled):
        ingest(
            big_text,
            pool,
            chroma,
            tmp_path,
            should_stop=lambda: len(heard) >= 4,
            on_parsed=lambda: heard.append("parsed"),
            on_stored=heard.append,
        )
    # The first batch out of the parser starts the embedding (heard once), then each stored.
    assert heard == ["parsed", 256, 512, 768]
    assert store.count({"dataset": "d"}) == 1  # the earlier chunk, none of the run's
