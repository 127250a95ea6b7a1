"""The local Hugging Face cache: where it is, what it holds, and deleting a model from it."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

from huggingface_hub import CachedRepoInfo, CacheNotFound, HFCacheInfo, scan_cache_dir

from llamafarm import bundled
from llamafarm.errors import BadRequest, Conflict, NotFound, Unavailable
from llamafarm.formats import human_size, iso_time

PROVIDER = "universal"
"""The one provider whose models live here: the in-process runtime's Hugging Face cache."""

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")


def cache_dir() -> Path:
    """The hub cache as huggingface_hub finds it, read from the environment at each call
    (huggingface_hub reads it once, at import): `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`,
    `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`."""
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
        )
        hub = os.path.join(os.path.expandvars(os.path.expanduser(home)), "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def check_provider(provider: str) -> None:
    if provider != PROVIDER:
        raise BadRequest(
            f"Unknown provider {provider!r}: only {PROVIDER!r} (the local Hugging Face cache) "
            "has a model cache"
        )


def check_model_name(model_name: str) -> str:
    """A Hugging Face model id, `org/name`; anything else (paths, `..`) is refused."""
    if not _REPO_ID.fullmatch(model_name) or ".." in model_name or "--" in model_name:
        shown = model_name if len(model_name) <= 80 else model_name[:77] + "..."
        raise BadRequest(
            f"Invalid model name {shown!r}: expected a Hugging Face model id ORG/NAME of "
            "letters, digits, '_', '.' and '-' (no '..' or '--')"
        )
    return model_name


def repo_folder(folder: Path, model_name: str) -> Path:
    """The cache folder of a model id (checked with `check_model_name` first)."""
    return folder / ("models--" + check_model_name(model_name).replace("/", "--"))


def _scan(folder: Path) -> HFCacheInfo | None:
    try:
        return scan_cache_dir(folder)
    except CacheNotFound:
        return None
    except (OSError, ValueError) as exc:  # a file where the cache should be, or unreadable
        raise Unavailable(f"Cannot read the Hugging Face cache at {folder}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class CachedModel:
    """A model in the cache, or one bundled with a Python package."""

    model_id: str
    size_bytes: int
    size_human: str
    last_modified: str
    revisions: list[str]
    bundled: bool
    path: str
    package: str | None = None
    """The Python package a bundled model comes from; None for the cache's models."""


@dataclasses.dataclass(frozen=True)
class DeletedModel:
    model_name: str
    revisions_deleted: int
    size_freed: int
    path: str


def _models(info: HFCacheInfo | None) -> list[CachedRepoInfo]:
    repos = info.repos if info is not None else frozenset[CachedRepoInfo]()
    return sorted((r for r in repos if r.repo_type == "model"), key=lambda r: r.repo_id)


def _entry(repo: CachedRepoInfo) -> CachedModel:
    revisions: list[str] = []
    for revision in sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash)):
        revisions.extend(sorted(revision.refs) or [revision.commit_hash])
    return CachedModel(
        model_id=repo.repo_id,
        size_bytes=repo.size_on_disk,
        size_human=human_size(repo.size_on_disk),
        last_modified=iso_time(repo.last_modified),
        revisions=revisions,
        bundled=False,
        path=str(repo.repo_path),
    )


def _bundled_entry(model: bundled.Bundled) -> CachedModel:
    stats = [path.stat() for path in model.files]
    size = sum(stat.st_size for stat in stats)
    return CachedModel(
        model_id=model.name,
        size_bytes=size,
        size_human=human_size(size),
        last_modified=iso_time(max(stat.st_mtime for stat in stats)),
        revisions=[model.version],
        bundled=True,
        package=model.package,
        path=str(model.files[0].parent),
    )


def list_models(*, provider: str = PROVIDER, folder: Path | None = None) -> list[CachedModel]:
    """The bundled models, then every model in the cache."""
    check_provider(provider)
    cached = _models(_scan(folder or cache_dir()))
    return [*(_bundled_entry(m) for m in bundled.installed()), *(_entry(r) for r in cached)]


def delete_model(
    model_name: str, *, provider: str = PROVIDER, folder: Path | None = None
) -> DeletedModel:
    """Delete every cached revision of a model, and the model's folder with them."""
    check_provider(provider)
    if model_name in bundled.PACKAGES:
        raise Conflict(
            f"{model_name!r} is bundled with the package, cannot be deleted "
            f"(it comes from the Python package {bundled.PACKAGES[model_name]})"
        )
    folder = folder or cache_dir()
    info = _scan(folder)
    repo = next((r for r in _models(info) if r.repo_id == model_name), None)
    # A listed model is deleted by what the scan found (an old cache may hold ids without an
    # org, like `gpt2`); any other name must be an ORG/NAME before it becomes a path.
    path = repo.repo_path if repo is not None else repo_folder(folder, model_name)
    if repo is None and not path.is_dir():
        raise NotFound(f"Model {model_name!r} is not in the cache at {folder}")
    revisions, freed = 0, 0
    try:
        if info is not None and repo is not None:
            # Asked of the whole cache, delete_revisions would take each commit hash from the
            # first repo that has it, and two repos can share commits (a mirror, a duplicate).
            alone = dataclasses.replace(info, repos=frozenset({repo}))
            hashes = [r.commit_hash for r in repo.revisions]
            strategy = alone.delete_revisions(*hashes)
            strategy.execute()
            revisions, freed = len(hashes), strategy.expected_freed_size
        if path.is_dir():
            # What huggingface_hub counts as no revision: the blobs of an interrupted download.
            freed += sum(f.stat().st_size for f in path.rglob("*") if _is_file(f))
            shutil.rmtree(path)
    except OSError as exc:
        raise Unavailable(f"Cannot delete {model_name!r} from {folder}: {exc}") from exc
    return DeletedModel(
        model_name=model_name, revisions_deleted=revisions, size_freed=freed, path=str(path)
    )


def _is_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
