"""Application factory: builds the services from settings and mounts the routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from llamafarm import __version__
from llamafarm.api.auth import KeyGuard, Keyring
from llamafarm.api.errors import errors, install_error_handlers
from llamafarm.api.limits import BodySizeLimit
from llamafarm.api.mcp import McpEndpoint
from llamafarm.api.paths import EncodedSlashGuard
from llamafarm.api.redaction import RedactSecrets
from llamafarm.api.routers import (
    chat,
    datasets,
    events,
    examples,
    models,
    projects,
    rag,
    system,
    tasks,
)
from llamafarm.api.sites import LOCAL_ORIGIN_REGEX, SiteGuard
from llamafarm.api.ui import UI_PREFIX, UiFiles
from llamafarm.chat.cache import ChatModelCache
from llamafarm.chat.providers import Streams
from llamafarm.chat.sessions import purge_expired
from llamafarm.chat.tools import McpPool
from llamafarm.chat.turn import ChatServices
from llamafarm.components import check_components
from llamafarm.config.redaction import redacted_logs
from llamafarm.events import purge_events
from llamafarm.models.downloads import Downloads
from llamafarm.models.first_use import FirstUse
from llamafarm.models.policy import config_policy
from llamafarm.projects import ProjectStore
from llamafarm.rag.stores import owner_clients
from llamafarm.residents import Residents
from llamafarm.settings import Settings
from llamafarm.state import StateDB
from llamafarm.system.health import (
    api_check,
    broker_check,
    chroma_check,
    data_dir_check,
    model_server_check,
    state_db_check,
    worker_check,
)
from llamafarm.system.version import VersionChecker
from llamafarm.tasks.app import create_celery

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    mcp = McpEndpoint(settings)
    keyring = Keyring(require=settings.require_auth)
    policy = config_policy(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.projects_dir.mkdir(parents=True, exist_ok=True)
        db = StateDB(settings.state_url, migration_lock_timeout=settings.migration_lock_timeout)
        app.state.settings = settings
        app.state.db = db
        app.state.celery = create_celery(settings)
        app.state.policy = policy
        app.state.projects = ProjectStore(
            settings.projects_dir,
            templates_dir=settings.templates_dir,
            policy=policy,
            check=check_components,
            shared=db if settings.shared else None,
        )
        streams = Streams()  # the remote chat models' streaming sessions, closed on this loop
        app.state.models = ChatModelCache(
            chroma=owner_clients(settings, db.engine),
            streams=streams,
            first_use=FirstUse(allowed=settings.allow_downloads),
            residents=Residents(
                idle_ttl=settings.model_idle_ttl or None,
                memory_bytes=None
                if settings.model_memory_gb is None
                else int(settings.model_memory_gb * 2**30),
            ),
        )
        app.state.mcp_pool = McpPool(policy=policy)
        app.state.chat = ChatServices(
            db=db,
            projects=app.state.projects,
            models=app.state.models,
            mcp_pool=app.state.mcp_pool,
            session_ttl=settings.session_ttl,
        )
        app.state.downloads = Downloads()
        app.state.version_checker = VersionChecker(
            current=__version__,
            url=settings.version_check_url,
            timeout=settings.version_check_timeout,
            ttl=settings.version_check_ttl,
        )
        app.state.health_checks = {
            "api": api_check,
            "data_dir": data_dir_check(settings.data_dir),
            "state_db": state_db_check(db, shared=settings.shared),
            "worker": worker_check(db),
            "broker": broker_check(settings.broker, settings.broker_dir),
            "model_server": model_server_check,
        }
        if settings.chroma_url:
            app.state.health_checks["chroma_server"] = chroma_check(settings.chroma_url)
        # Closed in the reverse order, each even when one before it fails.
        async with contextlib.AsyncExitStack() as closing:
            closing.enter_context(redacted_logs(policy))
            closing.callback(db.close)
            keyring.open(db)
            closing.callback(keyring.close)
            closing.push_async_callback(app.state.mcp_pool.close)
            closing.push_async_callback(streams.close)
            closing.callback(app.state.models.close)
            closing.callback(app.state.chat.close)
            closing.callback(app.state.downloads.close)
            purging = asyncio.create_task(_housekeeping(db, settings))
            # keep_loaded models load beside the start, not before it: the server answers
            # meanwhile, and a chat with one of them waits for the same load.
            kept = asyncio.create_task(_load_kept(app.state.models, app.state.projects))
            async with mcp.run(app):
                yield
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
            if not kept.done():
                kept.cancel()  # the thread finishes its load; a closed cache keeps nothing

    app = FastAPI(
        title="llamafarm",
        version=__version__,
        description="Local-first AI project server: projects, datasets, RAG and chat.",
        lifespan=lifespan,
        # Every route can answer these: SiteGuard (421, 403 for a foreign page) and KeyGuard.
        responses=errors(401, 403, 421),
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_kb << 10,
    )
    # Inside CORS: a 401 a page may read. Outside the body limit: a client without a key is
    # refused before its body is read.
    app.add_middleware(KeyGuard, keyring=keyring)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=LOCAL_ORIGIN_REGEX,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Session-ID", "X-LF-Context-Dropped"],
    )
    app.add_middleware(EncodedSlashGuard)
    app.add_middleware(RedactSecrets, policy=policy)
    app.add_middleware(SiteGuard, settings=settings)  # outermost: refused requests reach nothing
    install_error_handlers(app)
    app.include_router(system.router)
    for router in (
        projects.router,
        projects.config_router,
        chat.router,
        datasets.router,
        rag.router,
        tasks.router,
        events.router,
        examples.router,
        models.router,
    ):
        app.include_router(router, prefix="/v1")
    app.router.routes.append(Route("/mcp", mcp, name="mcp", include_in_schema=False))
    app.mount(UI_PREFIX.rstrip("/"), UiFiles(), name="ui")
    return app


async def _load_kept(models: ChatModelCache, projects: ProjectStore) -> None:
    try:
        loaded = await asyncio.to_thread(models.load_kept, projects)
    except Exception:  # the server goes on; each model loads on first use instead
        log.exception("loading the keep_loaded models failed")
    else:
        if loaded:
            log.info("Loaded %d keep_loaded model(s)", loaded)


async def _housekeeping(db: StateDB, settings: Settings) -> None:
    """Drop expired chat sessions and event logs past their retention, now and then (a
    session in use is expired lazily anyway)."""
    while True:
        for purge in (
            partial(purge_expired, db, ttl=settings.session_ttl),
            partial(purge_events, db, retention_days=settings.event_retention_days),
        ):
            try:
                await asyncio.to_thread(purge)
            except Exception:  # a database hiccup must not end the loop
                log.exception("housekeeping (%s) failed", purge.func.__name__)
        await asyncio.sleep(max(settings.session_ttl / 2, 60.0))
