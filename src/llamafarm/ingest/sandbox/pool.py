"""The worker's side of the parse sandbox: a few long-lived parse processes, one file each at a
time, within the file's time and memory limits.

Hand-written over `concurrent.futures.ProcessPoolExecutor` because that pool cannot stop one
file: killing its process breaks the whole pool and fails every file in it, and its results
come back whole, not as batches the worker asks for one by one. Here each process has its own
pipe; a file that runs past a limit, or is cancelled, gets its process killed and only that
process is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from llamafarm.documents import Chunk
from llamafarm.errors import ParseFailed, ParseLimitExceeded, Unavailable
from llamafarm.ingest.sandbox.child import MORE, PRELOAD, READY, Job, Stats, serve
from llamafarm.settings import Settings

log = logging.getLogger(__name__)

STOP_CHECK_S = 1.0
"""How often a worker waiting on a parse asks whether the file's task was cancelled."""
START_S = 120.0
"""How long a new parse process may take to start."""
IDLE_S = 120.0
"""A parse process unused this long exits; the worker takes none unused half as long."""


class Cancelled(Exception):
    """Raised between steps when the task this file belongs to was cancelled."""


@dataclass(frozen=True)
class ParseLimits:
    """The sandbox's settings (`LF_PARSE_*`)."""

    processes: int
    timeout_s: float
    max_mb: int
    max_unzipped_mb: int
    max_zip_ratio: float

    @classmethod
    def of(cls, settings: Settings) -> ParseLimits:
        return cls(
            processes=settings.parse_processes,
            timeout_s=settings.parse_timeout_s,
            max_mb=settings.parse_max_mb,
            max_unzipped_mb=settings.parse_max_unzipped_mb,
            max_zip_ratio=settings.parse_max_zip_ratio,
        )


class ParsePool:
    """Parse processes shared by the files a worker processes at once; at most
    `limits.processes` files are parsed at a time, the others wait for a process."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self._context = _context()
        self._slots = threading.Semaphore(limits.processes)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()

    def run(self, job: Job, should_stop: Callable[[], bool]) -> ParseRun:
        """A context manager that holds a process for the file; iterate it for its batches."""
        return ParseRun(self, job, should_stop)

    def warm(self) -> None:
        """Start the processes now, in the background: the forkserver's imports (seconds) are
        paid at the worker's start, not by its first files."""

        def start() -> None:
            for _ in range(self.limits.processes):
                if not self._slots.acquire(blocking=False):
                    return  # files took the slots meanwhile
                try:
                    child = _Child(self._context, self.limits)
                except Exception:
                    self._slots.release()
                    log.exception("could not start a parse process")
                    return
                self._give_back(child, reusable=True)

        threading.Thread(target=start, name="parse-warm", daemon=True).start()

    def close(self) -> None:
        """Stop the idle processes (a running file's process stops when its run ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()

    def _take(self, should_stop: Callable[[], bool]) -> _Child:
        while not self._slots.acquire(timeout=STOP_CHECK_S):
            if should_stop():
                raise Cancelled
        try:
            with self._lock:
                while self._idle:
                    child = self._idle.pop()
                    # One idle for half its IDLE_S could exit just as it gets the file.
                    if child.process.is_alive() and time.monotonic() - child.idle < IDLE_S / 2:
                        return child
                    child.kill()
            return _Child(self._context, self.limits)
        except BaseException:
            self._slots.release()
            raise

    def _give_back(self, child: _Child, *, reusable: bool) -> None:
        try:
            if reusable and child.process.is_alive():
                child.idle = time.monotonic()
                with self._lock:
                    self._idle.append(child)
            else:
                child.kill()
        finally:
            self._slots.release()


class ParseRun:
    """One file in one parse process: `with pool.run(job, stop) as run: for batch in run`."""

    def __init__(self, pool: ParsePool, job: Job, should_stop: Callable[[], bool]) -> None:
        self._pool, self._job, self._should_stop = pool, job, should_stop
        self._child: _Child | None = None
        self._reusable = False
        self.waited_s = 0.0
        """Seconds the worker waited on the process, what LF_PARSE_TIMEOUT_S counts."""
        self.stats: Stats | None = None
        """What the process reports once the file is done."""

    def __enter__(self) -> ParseRun:
        self._child = self._pool._take(self._should_stop)
        self._child.conn.send(self._job)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        if self._child is not None:
            self._pool._give_back(self._child, reusable=self._reusable)
            self._child = None

    def __iter__(self) -> Iterator[list[Chunk]]:
        while True:
            kind, value = self._ask()
            if kind == "batch":
                yield value
                continue
            if kind == "whole":
                chunks, self.stats = value
                self._reusable = True
                self._release()  # free for the next file while this one's are embedded
                step = self._job.batch
                yield from (chunks[i : i + step] for i in range(0, len(chunks), step))
                return
            if kind == "done":
                self.stats, self._reusable = value, True
                return
            if kind == "failed":
                self._reusable = True
                raise value
            if kind == "crashed":
                self._reusable = True
                log.error("parsing %s failed in its parse process:\n%s", self._job.filename, value)
                last = str(value).strip().splitlines()[-1]
                raise ParseFailed(f"'{self._job.filename}' could not be parsed: {last}")
            raise ParseLimitExceeded(  # "memory": the process exits after saying so
                f"'{self._job.filename}' needed more memory to parse than LF_PARSE_MAX_MB "
                f"({self._pool.limits.max_mb} MiB); its parse process was stopped"
            )

    def _ask(self) -> tuple[str, Any]:
        """The process's next message, waiting within the time limit and watching for a cancel."""
        assert self._child is not None
        conn, limits = self._child.conn, self._pool.limits
        conn.send(MORE)
        while True:
            remaining = limits.timeout_s - self.waited_s
            if remaining <= 0:
                raise ParseLimitExceeded(
                    f"'{self._job.filename}' was still being parsed after LF_PARSE_TIMEOUT_S "
                    f"({limits.timeout_s:g} s); its parse process was stopped"
                )
            begun = time.monotonic()
            ready = conn.poll(min(remaining, STOP_CHECK_S))
            self.waited_s += time.monotonic() - begun
            if ready:
                try:
                    message: tuple[str, Any] = conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                return message
            if self._should_stop():
                raise Cancelled

    def _died(self) -> ParseFailed:
        assert self._child is not None
        process = self._child.process
        process.join(5)
        return ParseFailed(
            f"'{self._job.filename}' stopped its parse process (exit code {process.exitcode}); "
            f"a file that needs more memory than LF_PARSE_MAX_MB "
            f"({self._pool.limits.max_mb} MiB) can do this"
        )


class _Child:
    """One parse process and the worker's end of its pipe."""

    def __init__(self, context: BaseContext, limits: ParseLimits) -> None:
        self.conn, theirs = context.Pipe()
        # Never written to: the process watches it to exit with the worker (child.py).
        lifeline, self._lifeline = context.Pipe(duplex=False)
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=serve,
            args=(theirs, lifeline, limits.max_mb, IDLE_S),
            name="llamafarm-parse",
            daemon=True,
        )
        self.process.start()
        self.idle = time.monotonic()
        theirs.close()
        lifeline.close()
        # Its start (the forkserver's own, with the parsers' imports, the first time) is not
        # the first file's time.
        try:
            if self.conn.poll(START_S) and self.conn.recv() == READY:
                return
        except (EOFError, OSError):
            pass
        self.kill()
        raise Unavailable(f"A parse process did not start within {START_S:g} s")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.process.close()
        self.conn.close()
        self._lifeline.close()


def _context() -> BaseContext:
    """forkserver where there is one: a parse process forks from a small server that has the
    parsers imported already (tens of ms), never from the worker with its threads, models and
    open databases; spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["llamafarm.ingest.sandbox.child", *PRELOAD])
        return context
    return multiprocessing.get_context("spawn")
