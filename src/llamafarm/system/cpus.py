"""The CPUs this process may use (threads of the local models)."""

from __future__ import annotations

import os


def default_threads() -> int:
    # The CPUs this process may run on, which a container can set below os.cpu_count().
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def chat_threads() -> int:
    """Threads of a local chat model (llama.cpp): half the CPUs. Its threads meet at a barrier
    after every step of every token, so when another process (the ingestion worker's embedder)
    takes one of the cores they wait on each other: on 2 cores with an ingestion running the
    bundled model made 6 tokens/s on 2 threads and 70 on 1 (82 on 1 and 134 on 2 when idle)."""
    return max(1, default_threads() // 2)
