"""What runs in a parse process: one file at a time, parsed, chunked and extracted, its chunks
sent back to the worker in batches, the next one only when the worker asks for it.

The conversation on the pipe: the process says `READY` once started; worker → process: a
`Job`, then `MORE` each time it wants the next batch; process → worker: for a file read
whole `("whole", (chunks, Stats))`, for a file streamed `("batch", chunks)` per batch, then
`("done", Stats)`; or `("failed", error)` / `("crashed", text)` / `("memory",
None)` instead. A process the worker stops asking is killed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.documents import Chunk, ParsedDocument, Section
from llamafarm.errors import LfError, ParseFailed
from llamafarm.ingest.chunking import chunk_document
from llamafarm.ingest.extractors import apply_extractors
from llamafarm.ingest.parsers import Parser, parse_with
from llamafarm.ingest.parsers.streams import stream_sections
from llamafarm.ingest.sandbox.zips import check_zip

READY = "ready"
MORE = "more"
PRELOAD = ("pypdf", "extract_msg", "yake")
"""Libraries the parsers and extractors import only when they first read a file (the worker,
which imports them to choose and check, never does): the parse processes' forkserver imports
them once, so that every parse process starts with them."""


@dataclass(frozen=True)
class Job:
    """One file for a parse process: what to read it with and how to cut it."""

    parser: type[Parser]
    fallback: type[Parser] | None
    options: dict[str, Any]
    path: Path
    filename: str
    strategy: DataProcessingStrategy
    """For its extractors."""
    batch: int
    """Chunks per batch sent back."""
    max_unzipped_bytes: int
    max_zip_ratio: float


@dataclass
class Stats:
    characters: int = 0
    chunks: int = 0
    parse_s: float = 0.0
    chunk_s: float = 0.0
    streamed: bool = False
    pid: int = field(default_factory=os.getpid)


def serve(conn: Connection, lifeline: Connection, max_mb: int, idle_s: float) -> None:
    """The process's loop: jobs until the pipe closes, a job stops it, or it idles `idle_s`."""
    _die_with_worker(lifeline)
    _limit(max_mb)
    conn.send(READY)  # started: from here on a file's time counts
    while conn.poll(idle_s):
        try:
            job = conn.recv()
        except EOFError:
            return
        if not isinstance(job, Job):
            continue  # the ask for a next batch of a file that failed before it was read
        if not _run(conn, job):
            return  # stopped half-way, or out of memory: the worker starts a fresh process


def _die_with_worker(lifeline: Connection) -> None:
    """Exit when the worker is gone (even killed: its end of `lifeline` closes with it), so a
    file stuck in a loop cannot outlive its worker."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # the worker never sends: this returns when its end closes
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _limit(max_mb: int) -> None:
    # No core files of a crashed parser; the address space capped at start-up size + max_mb
    # (a parse that allocates more gets MemoryError, or dies, and the worker goes on).
    ceiling = psutil.Process().memory_info().vms + (max_mb << 20)
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, ceiling)):
        # A platform without the limit (macOS has no RLIMIT_AS) goes without it.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (value, value))


def _run(conn: Connection, job: Job) -> bool:
    """Process one job; whether the process can take another."""
    stats = Stats()
    try:
        if conn.recv() != MORE:
            return False
        parsed = _parse(job, stats)
        if isinstance(parsed, list):
            conn.send(("whole", (parsed, stats)))
            return True
        asked = True
        for batch in parsed:  # the next batch is built while the worker stores this one
            if not asked and conn.recv() != MORE:
                return False
            conn.send(("batch", batch))
            asked = False
        if not asked and conn.recv() != MORE:
            return False
        conn.send(("done", stats))
        return True
    except MemoryError:
        pass  # answered below, once the parse's frames (and what they hold) are gone
    except LfError as exc:
        conn.send(("failed", exc))
        return True
    except Exception:
        conn.send(("crashed", traceback.format_exc(limit=8)))
        return True
    conn.send(("memory", None))
    return False


def _parse(job: Job, stats: Stats) -> list[Chunk] | Iterator[list[Chunk]]:
    """A file read whole: all its chunks (the worker has them at once and the process is free
    for the next file); a file streamed: its chunks `job.batch` at a time."""
    begun = time.perf_counter()
    check_zip(job.path, job.filename, max_bytes=job.max_unzipped_bytes, max_ratio=job.max_zip_ratio)
    sections = stream_sections(job.parser(job.options), job.path, job.filename)
    if sections is None:
        document = parse_with(
            job.parser, job.fallback, job.options, job.path, filename=job.filename
        )
        stats.characters = sum(len(section.text) for section in document.sections)
        stats.parse_s += time.perf_counter() - begun
        return _chunk(job, document, stats, first=0)
    stats.streamed = True
    return _stream(job, sections, stats)


def _stream(job: Job, sections: Iterator[Section], stats: Stats) -> Iterator[list[Chunk]]:
    pending: list[Chunk] = []
    while True:
        begun = time.perf_counter()
        section = next(sections, None)
        stats.parse_s += time.perf_counter() - begun
        if section is None:
            break
        stats.characters += len(section.text)
        pending.extend(_chunk(job, ParsedDocument([section]), stats, first=stats.chunks))
        while len(pending) >= job.batch:
            yield pending[: job.batch]
            pending = pending[job.batch :]
    if pending:
        yield pending
    elif not stats.chunks:
        raise ParseFailed(f"'{job.filename}' has no extractable text")


def _chunk(job: Job, document: ParsedDocument, stats: Stats, *, first: int) -> list[Chunk]:
    begun = time.perf_counter()
    options = job.options
    chunks = chunk_document(
        document,
        chunk_size=int(options.get("chunk_size", 1000)),
        chunk_overlap=int(options.get("chunk_overlap", 100)),
        chunk_strategy=str(options.get("chunk_strategy", "paragraphs")),
    )
    for chunk in chunks:
        chunk.metadata["chunk_index"] = first + int(chunk.metadata["chunk_index"])
    apply_extractors(job.strategy, job.filename, chunks)
    stats.chunks += len(chunks)
    stats.chunk_s += time.perf_counter() - begun
    return chunks
