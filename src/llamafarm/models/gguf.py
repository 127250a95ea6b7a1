"""Which GGUF file of a Hugging Face repo a model id names, and finding it in the local cache.

`ORG/NAME:QUANT` names the repo's GGUF file whose path contains QUANT (case-insensitive, as
a whole word: `Q4_K` is not `Q4_K_M`); `ORG/NAME` names its Q4_K_M file, else its smallest.
Vision projectors (`mmproj*`) are never the model. A model split into shards
(`...-00001-of-00003.gguf`) is its first shard: llama.cpp loads the others from beside it.
Only the cache is read here; `download` fetches the same choice on request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llamafarm.errors import BadRequest, ProviderUnavailable
from llamafarm.models.cache import cache_dir, repo_folder
from llamafarm.names import HfModelId, hf_model_id

DEFAULT_QUANT = "Q4_K_M"
"""What `ORG/NAME` without a quant picks when the repo has it (else the smallest file)."""
PULL = "lf models pull"
"""The command that gets a model into the cache (`POST /v1/models/download` for the API)."""

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class Choice:
    """One model of a repo: its file, or its shards in order, and their bytes together."""

    files: tuple[str, ...]
    size: int
    shards: int
    """How many files the model is split into (1: not split)."""


def parse(model: str) -> HfModelId:
    found = hf_model_id(model)
    if found is None:
        raise BadRequest(f"Invalid model id {model!r}: expected ORG/NAME or ORG/NAME:QUANT")
    return found


def has_quant(path: str, quant: str) -> bool:
    """Whether the quantization is a word of the file's path (its name or its folder)."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])"
    return re.search(pattern, path, re.IGNORECASE) is not None


def models(files: Iterable[tuple[str, int]]) -> list[Choice]:
    """The repo's GGUF models from its `(path, size)` files: shards grouped, projectors left."""
    groups: dict[str, list[tuple[str, int]]] = {}
    counts: dict[str, int] = {}
    for path, size in files:
        if not path.lower().endswith(".gguf") or PurePosixPath(path).name.startswith("mmproj"):
            continue
        shard = _SHARD.search(path)
        key = path[: shard.start()] if shard else path
        groups.setdefault(key, []).append((path, size))
        counts[key] = int(shard[2]) if shard else 1
    return [
        Choice(tuple(p for p, _ in sorted(group)), sum(s for _, s in group), counts[key])
        for key, group in sorted(groups.items())
    ]


def choose(choices: list[Choice], quant: str | None) -> Choice | None:
    """The model a quant (or none) names; None when the repo has no such file."""
    if quant is not None:
        matching = [c for c in choices if has_quant(c.files[0], quant)]
    else:
        matching = [c for c in choices if has_quant(c.files[0], DEFAULT_QUANT)] or choices
    return min(matching, key=lambda c: (c.size, c.files), default=None)


def not_cached(model: str, why: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"Model {model!r} {why}: get it with `{PULL} {model}` (or POST /v1/models/download), "
        "or set LF_ALLOW_DOWNLOADS=true for the server to download it on first use"
    )


def _snapshot(repo: Path) -> Path | None:
    """The snapshot folder of the repo's `main`, complete or not: huggingface_hub's own
    lookup refuses a snapshot that lacks any file of the repo, and a GGUF repo is fetched one
    quantization at a time."""
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if _COMMIT.fullmatch(commit) and snapshot.is_dir() else None


def cached_gguf(model: str, *, folder: Path | None = None) -> Path:
    """The GGUF file (a split model's first shard) that a model id names in the local cache,
    as its path in the snapshot (the shards are found beside it). Never touches the network."""
    wanted = parse(model)
    folder = folder or cache_dir()
    snapshot = _snapshot(repo_folder(folder, wanted.repo))
    if snapshot is None:
        raise not_cached(model, f"is not in the Hugging Face cache at {folder}")
    present = [
        (path.relative_to(snapshot).as_posix(), path.stat().st_size)
        for path in sorted(snapshot.rglob("*.gguf"))
        if path.is_file()
    ]
    choice = choose(models(present), wanted.quant)
    if choice is None:
        found = ", ".join(c.files[0] for c in models(present)) or "none"
        what = f"quantization {wanted.quant!r}" if wanted.quant else "GGUF file"
        raise not_cached(model, f"has no {what} in the Hugging Face cache (GGUF files: {found})")
    if len(choice.files) != choice.shards:
        raise not_cached(
            model,
            f"has {len(choice.files)} of its {choice.shards} shards in the Hugging Face cache",
        )
    return snapshot / choice.files[0]
