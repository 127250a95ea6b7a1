"""ONNX models run in-process with onnxruntime: one shared session per model file, and one run.

Used by the universal embedder and the cross-encoder reranker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import Tokenizer

from llamafarm.errors import LfError
from llamafarm.shared import Shared


class Loaded(NamedTuple):
    """An ONNX model ready to run (the embedder's, or a cross-encoder's)."""

    session: Any
    tokenizer: Tokenizer
    output: str
    inputs: frozenset[str]
    """Input names the model takes; some exports lack token_type_ids."""
    run_options: Any
    """A run's options: the arena hands back the memory the run took once it ends."""
    keeping: Any = None
    """Options of a run that another run of the same call follows: the arena keeps its memory
    for that run (None: `run_options`)."""


def _onnxruntime() -> Any:
    """onnxruntime, imported with its telemetry off: on import it otherwise writes a device id
    and `onnxruntime.db` under `~/.cache/Microsoft/DeveloperTools/`, outside the data dir."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # read once, when the module is first imported
    import onnxruntime  # type: ignore[import-untyped]  # 0.15 s import, paid on first use

    return onnxruntime


def run_options(*, shrink: bool = True) -> Any:
    """A run's options; `shrink`: the memory arena hands back what the run took once it ends,
    else it keeps it for the next run."""
    onnxruntime = _onnxruntime()
    options = onnxruntime.RunOptions()
    if shrink:
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def onnx_session(shared: Shared, path: Path, threads: int) -> Any:
    """The process's session of a model file (~160 MB RSS, 0.2 s to load), shared by every
    project's embedder or cross-encoder: a copy per project would multiply memory by the number
    of projects. Sessions hold nothing but the read-only model files, so sharing cannot leak
    state, and they run concurrently by design."""
    return shared.load(("onnx-session", path, threads), lambda: _load_session(path, threads))


def _load_session(path: Path, threads: int) -> Any:
    onnxruntime = _onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The memory arena makes inference ~1.5x faster than without it (measured on the bench
    # corpus: 31 s against 47 s), but keeps the peak of the largest batch for the life of the
    # process; shrinking it after each run (run_options) gives most of the speed (35 s) and
    # hands the memory back (459 MB RSS after, not 903 MB). The embedder shrinks it after a
    # call's last run only (`run(..., more=True)` before).
    options.enable_cpu_mem_arena = True
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(
    loaded: Loaded,
    feeds: Mapping[str, Any],
    *,
    fail: Callable[[str], LfError],
    more: bool = False,
) -> Any:
    """The model's output for `feeds`, given only the inputs its graph takes; an error from
    onnxruntime becomes `fail("inference failed: ...")`. `more`: another run of the same call
    follows, which reuses the arena's memory (`Loaded.keeping`)."""
    options = loaded.keeping if more and loaded.keeping is not None else loaded.run_options
    try:
        (output,) = loaded.session.run(
            [loaded.output], {k: v for k, v in feeds.items() if k in loaded.inputs}, options
        )
    except Exception as exc:  # onnxruntime's errors share no public base class
        raise fail(f"inference failed: {exc}") from exc
    return output
