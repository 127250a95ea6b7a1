"""The base of every response model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Public(BaseModel):
    """A response body (or part of one); unknown keys are an error, never dropped."""

    model_config = ConfigDict(extra="forbid")
