"""System routes: hello, info, health, liveness, release check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llamafarm import __version__
from llamafarm.api.deps import SettingsDep, VersionCheckerDep
from llamafarm.system.health import check_components, report

router = APIRouter()

HEALTH_TIMEOUT = 5.0


@router.get("/", operation_id="root", tags=["system"], summary="Hello")
def root() -> dict[str, str]:
    return {"message": "Hello, World!"}


@router.get("/info", operation_id="info", tags=["system"], summary="Version and data directory")
def info(settings: SettingsDep) -> dict[str, str]:
    return {"version": __version__, "data_directory": str(settings.data_dir)}


@router.get(
    "/health",
    operation_id="health",
    tags=["health"],
    summary="Health of every component; 503 when any is unhealthy",
    responses={503: {"description": "The same report, when a component is unhealthy"}},
)
async def health(request: Request) -> JSONResponse:
    components = await check_components(request.app.state.health_checks, timeout=HEALTH_TIMEOUT)
    body = report(components)
    return JSONResponse(body, status_code=503 if body["status"] == "unhealthy" else 200)


@router.get("/health/liveness", operation_id="liveness", tags=["health"], summary="Liveness")
def liveness() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/v1/system/version-check",
    operation_id="version_check",
    tags=["system"],
    summary="Latest released version (bounded time, cached)",
)
async def version_check(checker: VersionCheckerDep) -> dict[str, Any]:
    return await checker.check()
