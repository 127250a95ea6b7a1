"""A small HTTP client for the CLI; every failure becomes a CliError with a readable message."""

from __future__ import annotations

from typing import Any

import httpx


class CliError(Exception):
    """A failure to show the user as it is, then exit non-zero."""


class ApiClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = httpx.request(method, url, timeout=self.timeout, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(
                f"Cannot reach the llamafarm server at {self.base_url} ({exc}). "
                "Start it with `lf start`, or pass --server-url."
            ) from exc
        if response.is_error:
            raise CliError(f"Error {response.status_code}: {_detail(response)}")
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text
