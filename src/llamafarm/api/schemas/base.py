"""The base of every response model, and the shape of a server-sent event's schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Public(BaseModel):
    """A response body (or part of one); unknown keys are an error, never dropped."""

    model_config = ConfigDict(extra="forbid")


def sse_event(content: dict[str, Any]) -> dict[str, Any]:
    """One event of a server-sent event stream as OpenAPI describes it: `data` is a JSON text
    of `content`'s schema (a chat stream's last, OpenAI's `[DONE]`, is the one that is not)."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": content,
            }
        },
    }
