"""The release check behind /v1/system/version-check: bounded in time, cached, never raising."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx
from packaging.version import InvalidVersion, Version

UPGRADE = "pip install --upgrade llamafarm"
FAILURE_TTL = 300.0


@dataclasses.dataclass(frozen=True)
class ReleaseCheck:
    """What the feed said about the latest release, or why it said nothing (`error`)."""

    current_version: str
    latest_version: str | None = None
    name: str | None = None
    release_notes: str | None = None
    release_url: str | None = None
    published_at: str | None = None
    update_available: bool | None = None
    install: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"mac_linux": UPGRADE, "windows": UPGRADE}
    )
    error: str | None = None
    from_cache: bool = False


class VersionChecker:
    """Asks a GitHub-style `releases/latest` feed once per TTL; failures are cached briefly."""

    def __init__(self, *, current: str, url: str, timeout: float, ttl: float) -> None:
        self.current = current
        self.url = url
        self.timeout = timeout
        self.ttl = ttl
        self._cached: ReleaseCheck | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> ReleaseCheck:
        async with self._lock:  # concurrent callers share one outbound request
            if self._cached is not None and time.monotonic() < self._expires:
                return dataclasses.replace(self._cached, from_cache=True)
            result = await self._fetch()
            ttl = self.ttl if result.error is None else min(self.ttl, FAILURE_TTL)
            self._cached, self._expires = result, time.monotonic() + ttl
            return result

    async def _fetch(self) -> ReleaseCheck:
        if not self.url:
            return ReleaseCheck(
                self.current, error="version check disabled (LF_VERSION_CHECK_URL is empty)"
            )
        try:
            release = await asyncio.wait_for(self._get(), self.timeout)
            tag = str(release["tag_name"])
        except TimeoutError:
            error = f"release feed did not answer within {self.timeout:g}s"
            return ReleaseCheck(self.current, error=error)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            error = f"release feed unavailable: {type(exc).__name__}: {exc}"
            return ReleaseCheck(self.current, error=error)
        latest = tag.removeprefix("v")
        return ReleaseCheck(
            self.current,
            latest_version=latest,
            name=_text(release.get("name")) or tag,
            release_notes=_text(release.get("body")),
            release_url=_text(release.get("html_url")),
            published_at=_text(release.get("published_at")),
            update_available=_newer(latest, self.current),
        )

    async def _get(self) -> Any:
        headers = {"Accept": "application/json", "User-Agent": f"llamafarm/{self.current}"}
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            response = await client.get(self.url, follow_redirects=True)
            response.raise_for_status()
            return response.json()


def _text(value: Any) -> str | None:
    """A text field of the feed, or None when it is missing or not text (the answer types it)."""
    return value if isinstance(value, str) else None


def _newer(latest: str, current: str) -> bool | None:
    try:
        return Version(latest) > Version(current)
    except InvalidVersion:
        return None
