"""A worker's memory (issue 21): libraries only its parse processes or other stores use stay out
of it, its threads share few malloc arenas, and large blocks go back to the system when freed."""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys

import pytest

from llamafarm.ingest.sandbox.child import PRELOAD

DEFERRED = ("qdrant_client", *PRELOAD)
"""Imported on first use: by a parse process (its forkserver preloads them), or by a Qdrant
database's first store."""


def test_a_worker_imports_no_parse_library_nor_an_unused_store_client() -> None:
    code = (
        "import sys, llamafarm.tasks.worker, llamafarm.components\n"
        f"print(' '.join(m for m in {DEFERRED!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == []


def test_the_parse_processes_preload_modules_that_exist() -> None:
    # The forkserver skips a preload it cannot import without a word: a misspelt name would
    # only make every parse process import the library again on its first file.
    for name in PRELOAD:
        importlib.import_module(name)


ARENAS = """
import sys, threading
from llamafarm.system.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas(2)
def churn():
    for _ in range(20):
        garbage = [bytearray(100_000) for _ in range(40)]
threads = [threading.Thread(target=churn) for _ in range(16)]
for thread in threads: thread.start()
for thread in threads: thread.join()
# An arena beside the main one is a heap mapped at a multiple of 64 MiB (HEAP_MAX_SIZE).
print(sum(1 for line in open("/proc/self/maps")
          if len(line.split()) == 5 and int(line.split("-")[0], 16) % (64 << 20) == 0))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_threads_share_the_malloc_arenas_the_worker_allows() -> None:
    def heaps(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout)

    assert heaps("limit") <= 1 < heaps("default")


LARGE_BLOCKS = """
import re, sys
from llamafarm.system.memory import map_large_blocks
if sys.argv[1] == "map":
    assert map_large_blocks(1 << 20)
def anonymous_mib():
    text = open("/proc/self/smaps_rollup").read()
    return int(re.search(r"^Anonymous:\\s+(\\d+)", text, re.M).group(1)) >> 10
first = bytearray(8 << 20)  # mapped, and freed: glibc raises its threshold past 2 MiB
del first
before = anonymous_mib()
blocks = [bytearray(2 << 20) for _ in range(40)]
last = blocks.pop()  # kept: on a heap's top, it holds the freed ones below it
del blocks
print(anonymous_mib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_large_blocks_go_back_to_the_system_when_freed() -> None:
    def kept_mib(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", LARGE_BLOCKS, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout)

    assert kept_mib("map") < 8 < 40 < kept_mib("default")
