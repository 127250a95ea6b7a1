"""System routes: hello, info, health, liveness, release check."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llamafarm import __version__
from llamafarm.api.deps import SettingsDep, VersionCheckerDep
from llamafarm.api.schemas.system import (
    HealthReportPublic,
    Hello,
    InfoPublic,
    Liveness,
    VersionCheck,
)
from llamafarm.api.ui import accepts_html, shell
from llamafarm.system.health import check_components, report

router = APIRouter()

HEALTH_TIMEOUT = 5.0


@router.get(
    "/",
    operation_id="root",
    tags=["system"],
    summary="Hello",
    description="`{message}` for API clients; a browser (`Accept: text/html`) gets the "
    "Designer, the web UI, instead.",
    response_model=Hello,
)
def root(request: Request) -> Response:
    if accepts_html(request.scope["headers"]):
        return shell()
    return JSONResponse(Hello(message="Hello, World!").model_dump())


@router.get("/info", operation_id="info", tags=["system"], summary="Version and data directory")
def info(settings: SettingsDep) -> InfoPublic:
    return InfoPublic(version=__version__, data_directory=str(settings.data_dir))


@router.get(
    "/health",
    operation_id="health",
    tags=["health"],
    summary="Health of every component; 503 when any is unhealthy",
    response_model=HealthReportPublic,
    responses={
        503: {
            "model": HealthReportPublic,
            "description": "The same report, when a component is unhealthy",
        }
    },
)
async def health(request: Request) -> JSONResponse:
    components = await check_components(request.app.state.health_checks, timeout=HEALTH_TIMEOUT)
    body = HealthReportPublic.model_validate(report(components), from_attributes=True)
    # A JSONResponse, because the status code depends on the report.
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if body.status == "unhealthy" else 200
    )


@router.get("/health/liveness", operation_id="liveness", tags=["health"], summary="Liveness")
def liveness() -> Liveness:
    return Liveness(status="alive")


@router.get(
    "/v1/system/version-check",
    operation_id="version_check",
    tags=["system"],
    summary="Latest released version (bounded time, cached)",
)
async def version_check(checker: VersionCheckerDep) -> VersionCheck:
    return VersionCheck.model_validate(await checker.check(), from_attributes=True)
