"""The parse sandbox: a file that hangs, allocates too much, is a zip bomb or is cancelled
stops alone, in its own process, and the next file is parsed by a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llamafarm.config.models import DataProcessingStrategy
from llamafarm.config.models import Parser as ParserConfig
from llamafarm.documents import Chunk
from llamafarm.errors import ParseFailed, ParseLimitExceeded
from llamafarm.ingest.parsers import Parser
from llamafarm.ingest.parsers.docx import DocxParser
from llamafarm.ingest.parsers.text import TextParser
from llamafarm.ingest.sandbox import Cancelled, Job, ParseLimits, ParsePool
from llamafarm.ingest.sandbox.zips import check_zip
from tests.ingest.sandbox_parsers import HogParser, LoopParser

FIXTURES = Path(__file__).parent.parent / "fixtures"
LIMITS = ParseLimits(processes=2, timeout_s=2, max_mb=256, max_unzipped_mb=64, max_zip_ratio=100)
STRATEGY = DataProcessingStrategy(name="s", parsers=[ParserConfig(type="TextParser")])


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    sandbox = ParsePool(LIMITS)
    yield sandbox
    sandbox.close()


def job(parser: type[Parser], path: Path, **options: Any) -> Job:
    return Job(
        parser=parser,
        fallback=None,
        options=options,
        path=path,
        filename=path.name,
        strategy=STRATEGY,
        batch=4,
        max_unzipped_bytes=LIMITS.max_unzipped_mb << 20,
        max_zip_ratio=LIMITS.max_zip_ratio,
    )


def parse(pool: ParsePool, work: Job, stop: Callable[[], bool] = lambda: False) -> list[Chunk]:
    with pool.run(work, stop) as run:
        return [chunk for batch in run for chunk in batch]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.txt"
    path.write_text("Apple trees blossom in spring.\n\nThey bear fruit in autumn.")
    return path


def test_a_parser_that_loops_is_stopped_at_the_time_limit(
    pool: ParsePool, tmp_path: Path, good: Path
) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(ParseLimitExceeded, match=r"LF_PARSE_TIMEOUT_S \(2 s\)"):
        parse(pool, job(LoopParser, good, pid_file=str(pid_file)))
    assert gone(int(pid_file.read_text()))
    # The killed process is replaced: the next file parses.
    chunks = parse(pool, job(TextParser, good, chunk_size=100, chunk_overlap=0))
    assert [c.text for c in chunks] == [
        "Apple trees blossom in spring.\n\nThey bear fruit in autumn."
    ]


def test_a_parser_that_allocates_too_much_is_stopped_at_the_memory_limit(
    pool: ParsePool, tmp_path: Path, good: Path
) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(ParseLimitExceeded, match=r"LF_PARSE_MAX_MB \(256 MiB\)"):
        parse(pool, job(HogParser, good, pid_file=str(pid_file)))
    deadline = time.monotonic() + 10
    while not gone(int(pid_file.read_text())):  # it exits by itself after answering
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(parse(pool, job(TextParser, good))) == 1


def test_a_cancel_kills_the_process_mid_parse(pool: ParsePool, tmp_path: Path, good: Path) -> None:
    pid_file = tmp_path / "pid"
    slow = ParsePool(ParseLimits(**{**LIMITS.__dict__, "timeout_s": 600}))
    try:
        with pytest.raises(Cancelled):
            parse(slow, job(LoopParser, good, pid_file=str(pid_file)), stop=pid_file.exists)
        assert gone(int(pid_file.read_text()))
        assert len(parse(slow, job(TextParser, good))) == 1
    finally:
        slow.close()


def test_parse_errors_come_back_and_the_process_is_kept(pool: ParsePool, tmp_path: Path) -> None:
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ParseFailed, match="looks like a binary file") as failed:
        parse(pool, job(TextParser, binary))
    assert type(failed.value) is ParseFailed


def bomb(path: Path, size: int) -> Path:
    """A DOCX whose document part is `size` bytes of one repeated byte."""
    with (
        zipfile.ZipFile(FIXTURES / "handbook-1p.docx") as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            if item.filename != "word/document.xml":
                target.writestr(item, source.read(item))
        target.writestr("word/document.xml", b"a" * size)
    return path


def test_zip_bombs_are_refused_from_the_central_directory(tmp_path: Path) -> None:
    ratio = bomb(tmp_path / "ratio.docx", 8 << 20)
    with pytest.raises(ParseLimitExceeded, match=r"LF_PARSE_MAX_ZIP_RATIO \(100\)"):
        check_zip(ratio, "ratio.docx", max_bytes=64 << 20, max_ratio=100)
    with pytest.raises(ParseLimitExceeded, match=r"8 MiB, over LF_PARSE_MAX_UNZIPPED_MB \(4 MiB\)"):
        check_zip(ratio, "ratio.docx", max_bytes=4 << 20, max_ratio=10_000)
    check_zip(FIXTURES / "handbook-1p.docx", "handbook-1p.docx", max_bytes=4 << 20, max_ratio=100)


def test_a_zip_bomb_docx_fails_in_the_sandbox_and_the_next_file_parses(
    pool: ParsePool, tmp_path: Path, good: Path
) -> None:
    with pytest.raises(ParseLimitExceeded, match="LF_PARSE_MAX_ZIP_RATIO"):
        parse(pool, job(DocxParser, bomb(tmp_path / "bomb.docx", 32 << 20)))
    handbook = parse(pool, job(DocxParser, FIXTURES / "handbook-1p.docx"))
    assert handbook and all(c.text for c in handbook)


def test_files_parse_side_by_side_in_their_own_processes(pool: ParsePool, good: Path) -> None:
    pids: list[int] = []

    def one() -> None:
        with pool.run(job(TextParser, good), lambda: False) as run:
            list(run)
            assert run.stats is not None
            pids.append(run.stats.pid)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pids) == 4 and psutil.Process().pid not in pids


WORKER = """
import sys
from pathlib import Path
from llamafarm.ingest.sandbox import ParseLimits, ParsePool
from tests.ingest.test_sandbox import LIMITS, job
from tests.ingest.sandbox_parsers import LoopParser

pool = ParsePool(ParseLimits(**{**LIMITS.__dict__, "timeout_s": 600}))
with pool.run(job(LoopParser, Path(sys.argv[1]), pid_file=sys.argv[2]), lambda: False) as run:
    list(run)
"""


def test_a_parse_process_does_not_outlive_a_killed_worker(good: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    root = str(Path(__file__).parent.parent.parent)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(good), str(pid_file)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([root, *sys.path])},
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        parsing = int(pid_file.read_text())
    finally:
        worker.kill()  # as the OOM killer would: no clean-up runs
        worker.wait()
    deadline = time.monotonic() + 10
    while not gone(parsing):
        assert time.monotonic() < deadline, "the parse process outlived its worker"
        time.sleep(0.05)
