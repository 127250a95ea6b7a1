"""The CPUs this process may use (threads of the local models)."""

from __future__ import annotations

import os


def default_threads() -> int:
    # The CPUs this process may run on, which a container can set below os.cpu_count().
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
