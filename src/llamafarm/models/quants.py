"""What a repo on the Hugging Face Hub offers before anything is downloaded: its GGUF
quantizations with their sizes, and whether a model id's download would fit on the disk.

Both ask the Hub (`HF_ENDPOINT`) for the repo's file list once; an unknown repo is a 404 and
a Hub that cannot be reached a 503, as `download` says them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llamafarm.errors import LfError, NotFound
from llamafarm.formats import human_size
from llamafarm.models.cache import cache_dir, check_model_name
from llamafarm.models.download import HubFile, endpoint, hub_timeout, listing
from llamafarm.models.gguf import cached_gguf, choose, models, parse

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(IQ\d(?:_[A-Z0-9]+)*|Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|FP16|FP32|"
    r"MXFP4(?:_MOE)?)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
LOW_SPACE = 0.1
"""A download that would leave less than this share of its filesystem free is warned of."""

Usage = Callable[[Path], tuple[int, int, int]]
"""`shutil.disk_usage`'s shape: total, used and free bytes of the filesystem of a path."""


def quantization(filename: str) -> str | None:
    """The quantization a GGUF file's name says (`Q4_K_M`, `IQ4_XS`, `F16`), upper-cased."""
    found = _QUANT.search(PurePosixPath(filename).name)
    return found[1].upper() if found else None


@dataclass(frozen=True)
class Quantization:
    """One GGUF model of a repo: its file (a split model's first shard) and bytes in all."""

    filename: str
    quantization: str | None
    size_bytes: int
    size_human: str
    shards: int
    default: bool
    """Whether `ORG/NAME` without a quant names this one."""


def quantizations(model_id: str) -> list[Quantization]:
    """The repo's GGUF models, smallest first (vision projectors left out); `:QUANT` ignored."""
    repo = parse(model_id).repo
    check_model_name(repo)
    choices = models((f.name, f.size) for f in listing(repo, endpoint(), hub_timeout()))
    default = choose(choices, None)
    return [
        Quantization(
            filename=c.files[0],
            quantization=quantization(c.files[0]),
            size_bytes=c.size,
            size_human=human_size(c.size),
            shards=c.shards,
            default=c == default,
        )
        for c in sorted(choices, key=lambda c: (c.size, c.files))
    ]


@dataclass(frozen=True)
class DiskInfo:
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent_free: float


@dataclass(frozen=True)
class DownloadCheck:
    """Whether a model id can be downloaded, and why not."""

    model_name: str
    repo_exists: bool
    quantization_exists: bool
    cached: bool
    """The GGUF file the id names is in the cache already (nothing to download)."""
    files: list[str]
    """The files the download would fetch (a GGUF model's file or shards)."""
    required_bytes: int
    available_bytes: int
    can_download: bool
    warning: bool
    """The download fits but would leave the disk nearly full."""
    message: str
    cache_info: DiskInfo
    system_info: DiskInfo


def disk(path: Path, usage: Usage = shutil.disk_usage) -> DiskInfo:
    """The filesystem of `path`, or of its nearest folder that exists (a cache not made yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    total, used, free = usage(path)
    percent = round(100 * free / total, 1) if total else 0.0
    return DiskInfo(str(path), total, used, free, percent)


def check_download(model_id: str, *, usage: Usage = shutil.disk_usage) -> DownloadCheck:
    """Before downloading: the repo and the quantization exist, and the disk has room."""
    wanted = parse(model_id)
    check_model_name(wanted.repo)
    cache = disk(cache_dir(), usage)
    system = disk(Path(Path(cache.path).anchor or "/"), usage)
    try:
        files = listing(wanted.repo, endpoint(), hub_timeout())
    except NotFound as exc:
        return _refused(model_id, exc, cache, system, repo=False)
    chosen = _chosen(wanted.quant, files)
    if isinstance(chosen, LfError):
        return _refused(model_id, chosen, cache, system, repo=True)
    cached = _cached(model_id)
    required = 0 if cached else sum(f.size for f in chosen)
    fits = cache.free_bytes >= required
    low = fits and not cached and cache.free_bytes - required < LOW_SPACE * cache.total_bytes
    return DownloadCheck(
        model_name=model_id,
        repo_exists=True,
        quantization_exists=True,
        cached=cached,
        files=[f.name for f in chosen],
        required_bytes=required,
        available_bytes=cache.free_bytes,
        can_download=fits,
        warning=low,
        message=_message(model_id, cached=cached, required=required, cache=cache),
        cache_info=cache,
        system_info=system,
    )


def _chosen(quant: str | None, files: list[HubFile]) -> list[HubFile] | LfError:
    """What `download` would fetch: the GGUF model the quant names, else the whole repo when
    it has no GGUF file and no quant was asked for; a NotFound naming what the repo has."""
    choices = models((f.name, f.size) for f in files)
    if not choices and quant is None:
        return files
    choice = choose(choices, quant)
    if choice is None:
        found = ", ".join(c.files[0] for c in choices) or "none"
        return NotFound(
            f"The repo has no GGUF file of quantization {quant!r} (GGUF files: {found})"
        )
    return [f for f in files if f.name in choice.files]


def _message(model_id: str, *, cached: bool, required: int, cache: DiskInfo) -> str:
    if cached:
        return f"Model {model_id!r} is in the cache already"
    left = cache.free_bytes - required
    return (
        f"Downloading {model_id!r} needs {human_size(required)}; "
        f"{human_size(cache.free_bytes)} free at {cache.path}"
        + (": not enough space" if left < 0 else "")
        + (
            f" (only {human_size(left)} would be left)"
            if 0 <= left < LOW_SPACE * cache.total_bytes
            else ""
        )
    )


def _cached(model_id: str) -> bool:
    try:
        cached_gguf(model_id)
    except LfError:
        return False
    return True


def _refused(
    model_id: str, why: LfError, cache: DiskInfo, system: DiskInfo, *, repo: bool
) -> DownloadCheck:
    return DownloadCheck(
        model_name=model_id,
        repo_exists=repo,
        quantization_exists=False,
        cached=False,
        files=[],
        required_bytes=0,
        available_bytes=cache.free_bytes,
        can_download=False,
        warning=False,
        message=why.detail,
        cache_info=cache,
        system_info=system,
    )
