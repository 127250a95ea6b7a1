"""Validation of client-supplied names that end up as path segments under the data directory."""

from __future__ import annotations

import re

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
