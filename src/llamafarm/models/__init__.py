"""The local model cache of the `universal` provider: the Hugging Face hub cache, listed,
filled from the Hub on request (`download`), and emptied (`delete_model`), beside the models
bundled as Python packages, which are listed but never deleted."""

from __future__ import annotations

from llamafarm.models.cache import PROVIDER, cache_dir, check_model_name, delete_model, list_models
from llamafarm.models.download import download

__all__ = ["PROVIDER", "cache_dir", "check_model_name", "delete_model", "download", "list_models"]
