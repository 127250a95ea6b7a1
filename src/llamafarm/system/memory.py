"""How the process's C allocator keeps memory (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt's parameter (malloc.h): the most arenas malloc keeps."""


def limit_malloc_arenas(count: int) -> bool:
    """Let glibc's malloc keep at most `count` arenas; whether it took.

    By default glibc gives threads up to 8 arenas per core, and each keeps the peak of what
    its threads freed: a worker's 16 file threads (each calling Chroma, the tokenizer and
    onnxruntime in turn) held ~75 MiB more PSS than with 2 (bench/ingest.py). The same as
    MALLOC_ARENA_MAX, which must be set before the process starts; this works from inside,
    for the threads started after. ctypes by hand: no maintained package wraps mallopt.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        took = bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    if not took:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", count)
    return took
