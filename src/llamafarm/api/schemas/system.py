"""Bodies of the system routes: hello, info, health, liveness, release check."""

from __future__ import annotations

from typing import Literal

from llamafarm.api.schemas.base import Public

Status = Literal["healthy", "degraded", "unhealthy"]


class Hello(Public):
    message: str


class InfoPublic(Public):
    version: str
    data_directory: str


class ComponentHealthPublic(Public):
    name: str
    status: Status
    latency_ms: float
    message: str


class HealthReportPublic(Public):
    status: Status
    services: dict[str, Status]
    components: list[ComponentHealthPublic]
    timestamp: str


class Liveness(Public):
    status: Literal["alive"]


class InstallCommands(Public):
    mac_linux: str
    windows: str


class VersionCheck(Public):
    current_version: str
    latest_version: str | None
    name: str | None
    release_notes: str | None
    release_url: str | None
    published_at: str | None
    update_available: bool | None
    install: InstallCommands
    error: str | None
    from_cache: bool
