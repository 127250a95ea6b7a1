"""Models cache API: `/v1/models` (the local Hugging Face cache and the bundled models)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/models", tags=["models"])
