"""What a valid config asks for that this server will not do: one line per key, never dropped.

A model class lists such fields in `UNSUPPORTED` (field name → why, or what happens instead);
`config_warnings` walks a validated config and reports each one the file sets to a value
(`null` counts as not set), as `path: message` with the path written like validation errors'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from llamafarm.config.loader import format_location
from llamafarm.config.models import ProjectConfig


def config_warnings(config: ProjectConfig) -> list[str]:
    """`path: message` for every field the file sets that its model lists as unsupported."""
    lines: list[str] = []
    _walk(config, (), lines)
    return lines


def _walk(value: Any, loc: tuple[int | str, ...], lines: list[str]) -> None:
    if isinstance(value, BaseModel):
        unsupported: Mapping[str, str] = getattr(type(value), "UNSUPPORTED", {})
        for name in type(value).model_fields:
            child = getattr(value, name)
            if name not in value.model_fields_set or child is None:
                continue
            if name in unsupported:
                lines.append(f"{format_location((*loc, name))}: {unsupported[name]}")
            else:
                _walk(child, (*loc, name), lines)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk(item, (*loc, i), lines)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _walk(item, (*loc, key), lines)
