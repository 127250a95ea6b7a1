"""What routes get from the app: everything is built once in the lifespan of `create_app`.

The dependencies are `async def` although they wait for nothing: FastAPI runs a plain `def`
dependency on a worker thread, and a thread hop for each of them added milliseconds to every
request (measured with bench/chat.py). Routes take one dependency per thing they use, except
chat completions, which every chat waits on: it takes everything a chat turn uses as one
`ChatServicesDep`, built once in the lifespan (each FastAPI dependency costs CPU on every
request; five as one cut the server's CPU per streamed completion by about a fifth,
bench/chat.py)."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from llamafarm.api.auth import GRANT
from llamafarm.chat.cache import ChatModelCache
from llamafarm.chat.turn import ChatServices
from llamafarm.models.downloads import Downloads
from llamafarm.names import check_name
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag.stores import ChromaClients
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from llamafarm.state.keys import Grant
from llamafarm.system.version import VersionChecker


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_projects(request: Request) -> ProjectStore:
    store: ProjectStore = request.app.state.projects
    return store


async def get_db(request: Request) -> StateDB:
    db: StateDB = request.app.state.db
    return db


async def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


async def get_version_checker(request: Request) -> VersionChecker:
    checker: VersionChecker = request.app.state.version_checker
    return checker


async def get_models(request: Request) -> ChatModelCache:
    models: ChatModelCache = request.app.state.models
    return models


async def get_chroma(request: Request) -> ChromaClients:
    """The embedded Chroma stores' clients of the app's `ModelCache`, closed with it."""
    chroma: ChromaClients = request.app.state.models.chroma
    return chroma


async def get_chat_services(request: Request) -> ChatServices:
    chat: ChatServices = request.app.state.chat
    return chat


async def get_downloads(request: Request) -> Downloads:
    downloads: Downloads = request.app.state.downloads
    return downloads


async def get_project_ref(namespace: str, project: str) -> ProjectRef:
    """The `{namespace}/{project}` of the path, with both names validated."""
    return ProjectRef(
        check_name(namespace, kind="namespace"), check_name(project, kind="project name")
    )


async def get_grant(request: Request) -> Grant | None:
    """What the request's API key may do; None when keys are off."""
    grant: Grant | None = request.scope.get(GRANT)
    return grant


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProjectStoreDep = Annotated[ProjectStore, Depends(get_projects)]
StateDBDep = Annotated[StateDB, Depends(get_db)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
VersionCheckerDep = Annotated[VersionChecker, Depends(get_version_checker)]
ModelCacheDep = Annotated[ChatModelCache, Depends(get_models)]
ChromaClientsDep = Annotated[ChromaClients, Depends(get_chroma)]
ChatServicesDep = Annotated[ChatServices, Depends(get_chat_services)]
DownloadsDep = Annotated[Downloads, Depends(get_downloads)]
ProjectRefDep = Annotated[ProjectRef, Depends(get_project_ref)]
GrantDep = Annotated[Grant | None, Depends(get_grant)]
