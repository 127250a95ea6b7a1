"""GGUF repos in a Hugging Face cache on disk, in the layout huggingface_hub leaves: blobs,
`refs/main` and a snapshot of symlinks, the blobs themselves links to real files (the bundled
model) or sparse files of a given size (decoys that cost no disk)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.models.hub import SHA


def cache_gguf(cache: Path, repo_id: str, files: dict[str, Path | int]) -> Path:
    """The repo's snapshot folder; each file a link to a path, or a sparse file of a size."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(SHA)
    snapshot = repo / "snapshots" / SHA
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(name.encode()).hexdigest()
        if isinstance(content, Path):
            blob.symlink_to(content)
        else:
            with blob.open("wb") as file:
                file.write(b"GGUF")
                file.truncate(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot
