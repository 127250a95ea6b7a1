"""The release check behind /v1/system/version-check: bounded in time, cached, never raising."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from packaging.version import InvalidVersion, Version

UPGRADE = "pip install --upgrade llamafarm"
FAILURE_TTL = 300.0


class VersionChecker:
    """Asks a GitHub-style `releases/latest` feed once per TTL; failures are cached briefly."""

    def __init__(self, *, current: str, url: str, timeout: float, ttl: float) -> None:
        self.current = current
        self.url = url
        self.timeout = timeout
        self.ttl = ttl
        self._cached: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, Any]:
        async with self._lock:  # concurrent callers share one outbound request
            if self._cached is not None and time.monotonic() < self._expires:
                return {**self._cached, "from_cache": True}
            result = await self._fetch()
            ttl = self.ttl if result["error"] is None else min(self.ttl, FAILURE_TTL)
            self._cached, self._expires = result, time.monotonic() + ttl
            return {**result, "from_cache": False}

    async def _fetch(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "current_version": self.current,
            "latest_version": None,
            "name": None,
            "release_notes": None,
            "release_url": None,
            "published_at": None,
            "update_available": None,
            "install": {"mac_linux": UPGRADE, "windows": UPGRADE},
            "error": None,
        }
        if not self.url:
            return {**result, "error": "version check disabled (LF_VERSION_CHECK_URL is empty)"}
        try:
            release = await asyncio.wait_for(self._get(), self.timeout)
            tag = str(release["tag_name"])
        except TimeoutError:
            return {**result, "error": f"release feed did not answer within {self.timeout:g}s"}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return {**result, "error": f"release feed unavailable: {type(exc).__name__}: {exc}"}
        latest = tag.removeprefix("v")
        return {
            **result,
            "latest_version": latest,
            "name": _text(release.get("name")) or tag,
            "release_notes": _text(release.get("body")),
            "release_url": _text(release.get("html_url")),
            "published_at": _text(release.get("published_at")),
            "update_available": _newer(latest, self.current),
        }

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
