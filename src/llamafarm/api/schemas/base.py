"""The base of every response model, and the shape of a server-sent event's schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Public(BaseModel):
    """A response body (or part of one); unknown keys are an error, never dropped."""

    model_config = ConfigDict(extra="forbid")


DONE = "[DONE]"
"""The `data` of OpenAI's last event of a stream: the one that is not JSON."""


def sse_event(content: dict[str, Any], *, done: bool = False) -> dict[str, Any]:
    """One event of a server-sent event stream as OpenAPI describes it: `data` is a JSON text
    of `content`'s schema; with `done`, or the closing `[DONE]` (a chat stream's last)."""
    data: dict[str, Any] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": content,
    }
    if done:
        data = {"anyOf": [{"const": DONE}, data]}
    return {"type": "object", "required": ["data"], "properties": {"data": data}}
