"""Prompt sets as the messages before the conversation, `{{var}}` and `{{var | default}}`
filled in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llamafarm.chat.providers.base import Message
from llamafarm.config.models import ModelConfig, ProjectConfig
from llamafarm.errors import BadRequest

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*(.*?)\s*)?\}\}", re.DOTALL)


def render(text: str, variables: Mapping[str, object]) -> str:
    """Fill placeholders; one without a default and without a value is a 400 naming it."""

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables and variables[name] is not None:
            return str(variables[name])
        if default is not None:
            return default
        raise BadRequest(
            f"Prompt variable {name!r} has no value: send it in the request's `variables`"
        )

    return _PLACEHOLDER.sub(fill, text)


def render_all(value: object, variables: Mapping[str, object]) -> Any:
    """`render` on every string inside lists and mappings (a configured tool's schema)."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, Mapping):
        return {key: render_all(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [render_all(item, variables) for item in value]
    return value


def prompt_messages(
    config: ProjectConfig, model: ModelConfig, variables: Mapping[str, object]
) -> list[Message]:
    """The messages of the model's prompt sets (all of the project's when it names none)."""
    wanted = model.prompts or [p.name for p in config.prompts]
    sets = {p.name: p for p in config.prompts}
    return [
        Message(role=m.role, content=render(m.content, variables), tool_call_id=m.tool_call_id)
        for name in wanted
        for m in sets[name].messages
    ]
