"""An ONNX export of a Hugging Face model, looked up in the local cache only."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

ONNX_FILES = ("model.onnx", "onnx/model.onnx")
"""Where sentence-transformers repos keep their ONNX export."""


def cached_onnx(repo_id: str, cache_dir: str | None = None) -> tuple[Path, Path] | None:
    """`(model.onnx, tokenizer.json)` of a cached snapshot of `repo_id`; None when the cache
    holds no such snapshot or it has no ONNX export. Never touches the network."""
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    tokenizer = folder / "tokenizer.json"
    for name in ONNX_FILES:
        if (folder / name).is_file() and tokenizer.is_file():
            return folder / name, tokenizer
    return None
