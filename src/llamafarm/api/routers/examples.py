"""Examples API: `/v1/examples` (bundled example projects and their import)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/examples", tags=["examples"])
