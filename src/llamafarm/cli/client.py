"""A small HTTP client for the CLI; every failure becomes a CliError with a readable message."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx


class CliError(Exception):
    """A failure to show the user as it is, then exit non-zero."""


class ApiClient:
    def __init__(self, base_url: str, *, api_key: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(
        self, method: str, path: str, *, accept: tuple[int, ...] = (), **kwargs: Any
    ) -> Any:
        """The JSON answer; an error status raises, except those in `accept`."""
        url = self.base_url + path
        try:
            headers = {**self.auth, **kwargs.pop("headers", {})}
            response = httpx.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if response.is_error and response.status_code not in accept:
            raise CliError(f"Error {response.status_code}: {_detail(response)}")
        return response.json()

    def events(
        self, path: str, *, json_body: Any, headers: dict[str, str]
    ) -> Generator[tuple[dict[str, str], Any], None, None]:
        """POST, then each server-sent event's JSON as it arrives, with the response headers.

        Only connecting has a time limit: a model may take minutes to load or to read a long
        prompt before its first token, and a stream is over when the server says `[DONE]` (or
        ends the body) or the connection drops, never because it was quiet. Closing the
        iterator (Ctrl-C while reading it) closes the connection, which the server takes as
        the request's cancel."""
        url = self.base_url + path
        timeout = httpx.Timeout(None, connect=self.timeout)
        try:
            with httpx.stream(
                "POST", url, json=json_body, headers={**self.auth, **headers}, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise CliError(f"Error {response.status_code}: {_detail(response)}")
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        return
                    if line.startswith("data: "):
                        yield dict(response.headers), json.loads(line[len("data: ") :])
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self.unreachable(exc) from exc
        except httpx.TransportError as exc:
            raise self.went_away(exc) from exc

    def unreachable(self, exc: object) -> CliError:
        return CliError(
            f"Cannot reach the llamafarm server at {self.base_url} ({exc}). "
            "Start it with `lf start`, or pass --server-url."
        )

    def went_away(self, exc: object) -> CliError:
        return CliError(
            f"The llamafarm server at {self.base_url} went away: the connection dropped "
            f"before the answer ended ({exc or type(exc).__name__})"
        )

    def download(self, path: str, target: Path) -> int:
        """GET a file into `target` as it arrives; its size."""
        size = 0
        try:
            with httpx.stream(
                "GET", self.base_url + path, headers=self.auth, timeout=self.timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise CliError(f"Error {response.status_code}: {_detail(response)}")
                with target.open("wb") as out:
                    for block in response.iter_bytes():
                        out.write(block)
                        size += len(block)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self.unreachable(exc) from exc
        except httpx.TransportError as exc:
            raise self.went_away(exc) from exc
        return size

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
