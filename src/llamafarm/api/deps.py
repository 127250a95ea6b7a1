"""What routes get from the app: everything is built once in the lifespan of `create_app`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llamafarm.projects import ProjectStore
from llamafarm.settings import Settings
from llamafarm.system.version import VersionChecker


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_projects(request: Request) -> ProjectStore:
    store: ProjectStore = request.app.state.projects
    return store


def get_version_checker(request: Request) -> VersionChecker:
    checker: VersionChecker = request.app.state.version_checker
    return checker


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProjectStoreDep = Annotated[ProjectStore, Depends(get_projects)]
VersionCheckerDep = Annotated[VersionChecker, Depends(get_version_checker)]
