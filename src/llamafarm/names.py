"""Validation of client-supplied names: those that end up as path segments under the data
directory, and Hugging Face model ids, which name a model in the Hugging Face cache."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llamafarm.errors import InvalidName

DEFAULT_NAMESPACE = "default"
"""Where projects go when a client names no namespace."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(value: str) -> bool:
    return bool(_NAME_RE.fullmatch(value)) and ".." not in value


def check_name(value: str, *, kind: str = "name") -> str:
    """Return `value` if it is a safe name, else raise InvalidName."""
    if not is_valid_name(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidName(
            f"Invalid {kind} {shown!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return value


_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_QUANT = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,30}[A-Za-z0-9])?"
HF_MODEL_PATTERN = rf"(?P<repo>{_HF_PART}/{_HF_PART})(?::(?P<quant>{_HF_QUANT}))?"
"""`ORG/NAME` or `ORG/NAME:QUANT` (LlamaFarm's form for one GGUF quantization of a repo):
exactly one `/`, each part starting and ending with a letter or digit, so never `/x`, `~/x`,
`./x`, `a/b/c` or anything with `..` or `--` (which the Hub refuses too)."""
_HF_MODEL_RE = re.compile(HF_MODEL_PATTERN)


@dataclass(frozen=True)
class HfModelId:
    """A Hugging Face model id, and the quantization it asks for (None: the repo's default)."""

    repo: str
    quant: str | None = None

    def __str__(self) -> str:
        return self.repo if self.quant is None else f"{self.repo}:{self.quant}"


def hf_model_id(value: str) -> HfModelId | None:
    """The model id `value` is, or None: a name, never a path, so it can only resolve inside
    the Hugging Face cache."""
    match = _HF_MODEL_RE.fullmatch(value)
    if match is None or ".." in value or "--" in value:
        return None
    return HfModelId(match["repo"], match["quant"])
