"""`lf`: start the server and a worker, create projects; subcommands for the rest."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from llamafarm import __version__
from llamafarm.cli.chat import chat
from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import GlobalOptionsGroup, client, err, out, segment
from llamafarm.cli.config_cmd import config_app
from llamafarm.cli.datasets import datasets_app, tasks_app
from llamafarm.cli.eval import evaluate
from llamafarm.cli.events import events_app
from llamafarm.cli.examples import examples_app
from llamafarm.cli.keys import keys_app
from llamafarm.cli.mcp import mcp
from llamafarm.cli.models import models_app
from llamafarm.cli.projects import projects_app
from llamafarm.cli.rag import rag_app
from llamafarm.cli.services import services_app
from llamafarm.config import dump_document
from llamafarm.errors import MigrationRefused
from llamafarm.names import DEFAULT_NAMESPACE
from llamafarm.settings import Settings

app = typer.Typer(
    cls=GlobalOptionsGroup,
    no_args_is_help=True,
    help="llamafarm: a local-first AI project server.",
)
app.add_typer(projects_app, name="projects")
app.add_typer(datasets_app, name="datasets")
app.add_typer(tasks_app, name="tasks")
app.add_typer(rag_app, name="rag")
app.command("eval")(evaluate)
app.command("chat")(chat)
app.add_typer(events_app, name="events")
app.add_typer(examples_app, name="examples")
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(services_app, name="services")
app.command("mcp")(mcp)

HostOption = Annotated[str | None, typer.Option(help="Interface to bind (LF_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (LF_PORT).")]
DataDirOption = Annotated[
    Path | None, typer.Option(help="Where projects and state live (LF_DATA_DIR).")
]


@app.callback()
def main(
    ctx: typer.Context,
    server_url: Annotated[
        str, typer.Option(envvar="LF_SERVER_URL", help="Where the llamafarm server listens.")
    ] = "http://localhost:8000",
) -> None:
    # The key comes only from the environment: an option would show it in the process list.
    ctx.obj = ApiClient(server_url, api_key=os.environ.get("LF_API_KEY", ""))


@app.command()
def start(
    host: HostOption = None,
    port: PortOption = None,
    data_dir: DataDirOption = None,
    worker: Annotated[
        bool | None, typer.Option(help="Also run an ingestion worker (LF_EMBEDDED_WORKER).")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve a non-loopback --host without API keys (only on a trusted network).",
        ),
    ] = False,
    allow_mcp_command: Annotated[
        list[str] | None,
        typer.Option(
            help="A program projects' stdio MCP servers may start, added to "
            "LF_MCP_ALLOWED_COMMANDS (repeatable).",
        ),
    ] = None,
) -> None:
    """Start the server, and an ingestion worker beside it, in the foreground."""
    import uvicorn

    from llamafarm.api import create_app
    from llamafarm.api.sites import WILDCARD_BINDS

    settings = _settings(host=host, port=port, data_dir=data_dir, embedded_worker=worker)
    # Before anything reads the database (the key check) and before the worker starts, so the
    # worker finds it at head instead of waiting.
    _upgrade_state(settings)
    if not insecure_no_auth:
        settings = check_exposure(settings)
    if settings.host.strip() in WILDCARD_BINDS and not settings.allowed_hosts:
        err.print(
            f"Listening on all interfaces ({settings.host!r}), but answering only requests "
            "addressed to localhost or 127.0.0.1: list the names clients use in "
            "LF_ALLOWED_HOSTS (e.g. LF_ALLOWED_HOSTS=192.168.1.5,box.local)."
        )
    if allow_mcp_command:
        commands = [*settings.mcp_allowed_commands, *allow_mcp_command]
        settings = settings.model_copy(update={"mcp_allowed_commands": commands})
    err.print(f"llamafarm {__version__}: data in {settings.data_dir}")
    supervisor = WorkerSupervisor(settings) if settings.embedded_worker else None
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()


@app.command("worker")
def worker_command(
    data_dir: DataDirOption = None,
    concurrency: Annotated[int | None, typer.Option(help="LF_WORKER_CONCURRENCY")] = None,
) -> None:
    """Run an ingestion worker alone (for LF_BROKER_URL=redis://...: as many as you like)."""
    from llamafarm.tasks.worker import run_worker

    settings = _settings(data_dir=data_dir, worker_concurrency=concurrency)
    parent = os.environ.get("LF_PARENT_PID")
    try:
        run_worker(settings, parent_pid=int(parent) if parent else None)
    except MigrationRefused as exc:
        raise CliError(f"cannot start the worker: {exc}") from exc


@app.command()
def migrate(data_dir: DataDirOption = None) -> None:
    """Create or upgrade the state database's schema (LF_DATABASE_URL) and exit: run it once
    per release before starting API replicas and workers (each also upgrades at start)."""
    from llamafarm.state.migrate import head

    settings = _settings(data_dir=data_dir)
    _upgrade_state(settings, role="migrate")
    out.print(f"state database at schema {head()}", highlight=False)


def _upgrade_state(settings: Settings, *, role: str = "start the server") -> None:
    """Bring the state database to this version's schema, or exit saying why not."""
    from llamafarm.state import StateDB

    try:
        StateDB(settings.state_url, migration_lock_timeout=settings.migration_lock_timeout).close()
    except MigrationRefused as exc:
        raise CliError(f"cannot {role}: {exc}") from exc


@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    namespace: Annotated[str, typer.Option(help="Namespace of the project.")] = DEFAULT_NAMESPACE,
    template: Annotated[
        str, typer.Option(help="server, rag, default or a custom one.")
    ] = "default",
) -> None:
    """Create a project on the server and write its llamafarm.yaml here."""
    target = Path.cwd() / "llamafarm.yaml"
    if target.exists():
        raise CliError(f"{target} already exists; run `lf init` in another folder")
    body = client(ctx).post(
        f"/v1/projects/{segment(namespace)}", json={"name": name, "config_template": template}
    )
    target.write_text(dump_document(body["project"]["config"]), encoding="utf-8")
    out.print(f"Created project {namespace}/{name} and wrote {target}")


@app.command()
def version(ctx: typer.Context) -> None:
    """Print the CLI's version and, if it answers, the server's."""
    out.print(f"lf {__version__}")
    api = client(ctx)
    try:
        info = api.get("/info")
    except CliError:
        out.print(f"server: not reachable at {api.base_url}")
        return
    out.print(f"server {info['version']} at {api.base_url} (data: {info['data_directory']})")


def check_exposure(settings: Settings) -> Settings:
    """Refuse to serve a non-loopback address that no API key protects; the settings to serve
    it with require a key from then on, so revoking the last one does not open the API."""
    from llamafarm.api.auth import exposure_problem, is_loopback
    from llamafarm.state import StateDB
    from llamafarm.state.keys import count_keys

    if settings.require_auth or is_loopback(settings.host):
        return settings  # no need to open the database
    db = StateDB(settings.state_url, migration_lock_timeout=settings.migration_lock_timeout)
    try:
        keys = count_keys(db)
    finally:
        db.close()
    problem = exposure_problem(settings.host, has_keys=keys > 0, require_auth=False)
    if problem:
        raise CliError(problem)
    return settings.model_copy(update={"require_auth": True})


def _settings(**overrides: Any) -> Settings:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s"
    )
    return settings


class WorkerSupervisor:
    """The embedded worker: same settings, restarted if it dies, stopped with the server.

    The worker exits by itself if this process dies (LF_PARENT_PID), and a restarted worker
    queues again the files its predecessor had started.
    """

    RESTART_DELAY = 2.0

    def __init__(self, settings: Settings) -> None:
        self.env = {
            **os.environ,
            "LF_DATA_DIR": str(settings.data_dir),
            # The worker checks configs against the same policy as the server.
            "LF_MCP_ALLOWED_COMMANDS": ",".join(settings.mcp_allowed_commands),
            "LF_PARENT_PID": str(os.getpid()),
        }
        self.stopping = threading.Event()
        self.child = self._spawn()
        threading.Thread(target=self._watch, daemon=True).start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "llamafarm.cli", "worker"], env=self.env)

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            code = self.child.poll()
            if code is not None and not self.stopping.is_set():
                err.print(f"[yellow]ingestion worker exited ({code}); restarting it[/yellow]")
                self.stopping.wait(self.RESTART_DELAY)
                if not self.stopping.is_set():
                    self.child = self._spawn()

    def stop(self) -> None:
        self.stopping.set()
        self.child.terminate()
        try:
            self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


def run() -> None:
    """Entry point: CliError exits 1 with its message on stderr."""
    try:
        app()
    except CliError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        sys.exit(1)
