"""The one place errors become responses: every error body is `{"detail": str}`, and the
OpenAPI says so (`errors()` documents the statuses a router or route can answer)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from llamafarm.config.loader import describe_errors
from llamafarm.errors import LfError

log = logging.getLogger(__name__)


class Error(BaseModel):
    """The body of every error answer."""

    detail: str


_MEANINGS = {
    400: "An invalid name or value",
    401: "An API key is required, or the one given is not valid",
    403: "The API key, or the web page sending the request, may not do this",
    404: "Not found",
    409: "In conflict with the current state",
    413: "The request is too large",
    421: "The Host header names no host this server answers to",
    422: "The request does not validate",
    502: "The model server answered with an error",
    503: "A model, store or service is unavailable",
    504: "The model server did not answer in time",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each `{"detail": str}`. Given for 422 it
    replaces FastAPI's own 422 entry, whose `detail` is a list: ours is always a string."""
    return {status: {"model": Error, "description": _MEANINGS[status]} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LfError)
    async def lf_error(request: Request, exc: LfError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Internal server error"}, status_code=500)
