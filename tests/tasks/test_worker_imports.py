"""What a worker process imports: libraries only its parse processes or other stores use stay
out of its memory (issue 21)."""

from __future__ import annotations

import importlib
import subprocess
import sys

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
