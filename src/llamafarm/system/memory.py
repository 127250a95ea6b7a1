"""How the process's C allocator keeps memory (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt's parameter (malloc.h): the most arenas malloc keeps."""
M_MMAP_THRESHOLD = -3
"""mallopt's parameter: blocks from this size up get a mapping of their own."""


def limit_malloc_arenas(count: int) -> bool:
    """Let glibc's malloc keep at most `count` arenas; whether it took.

    By default glibc gives threads up to 8 arenas per core, and each keeps the peak of what
    its threads freed: a worker's 16 file threads (each calling Chroma, the tokenizer and
    onnxruntime in turn) held ~75 MiB more PSS than with 2 (bench/ingest.py). The same as
    MALLOC_ARENA_MAX, which must be set before the process starts; this works from inside,
    for the threads started after. ctypes by hand: no maintained package wraps mallopt.
    """
    return _mallopt(M_ARENA_MAX, count)


def map_large_blocks(threshold: int) -> bool:
    """Give every block of `threshold` bytes or more a mapping of its own, handed back to the
    system when freed; whether it took.

    glibc starts at 128 KiB but raises the threshold to the size of each mapped block freed,
    up to 32 MiB: after the first few model runs, the inference's large arrays come from the
    heaps, whose free holes are kept and scattered (freed memory comes back only from a heap's
    top). A fixed threshold also keeps it from moving. The same as MALLOC_MMAP_THRESHOLD_.
    At bench/ingest.py's peak a worker held ~370 MiB of malloc heaps; with 1 MiB its peak PSS
    fell from 750-830 to 585 MiB, for ~2 % more time embedding (a mapping's pages are faulted
    in anew each time).
    """
    return _mallopt(M_MMAP_THRESHOLD, threshold)


def _mallopt(parameter: int, value: int) -> bool:
    libc = _libc()
    if libc is None:  # not glibc (macOS, musl): nothing to tune
        return False
    took = bool(libc.mallopt(parameter, value))
    if not took:
        log.debug("mallopt(%d, %d) was refused", parameter, value)
    return took


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt  # noqa: B018  # glibc's; other C libraries lack it
    except (OSError, AttributeError):
        return None
    return libc
