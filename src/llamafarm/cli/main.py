"""`lf`: start the server, create and inspect projects."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from llamafarm import __version__
from llamafarm.cli.client import ApiClient, CliError
from llamafarm.config import dump_document, json_schema

app = typer.Typer(no_args_is_help=True, help="llamafarm: a local-first AI project server.")
projects_app = typer.Typer(no_args_is_help=True, help="List and inspect projects.")
config_app = typer.Typer(no_args_is_help=True, help="The llamafarm.yaml schema.")
app.add_typer(projects_app, name="projects")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

DEFAULT_NAMESPACE = "default"


@app.callback()
def main(
    ctx: typer.Context,
    server_url: Annotated[
        str, typer.Option(envvar="LF_SERVER_URL", help="Where the llamafarm server listens.")
    ] = "http://localhost:8000",
) -> None:
    ctx.obj = ApiClient(server_url)


@app.command()
def start(
    host: Annotated[str | None, typer.Option(help="Interface to bind (LF_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (LF_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where projects and state live (LF_DATA_DIR).")
    ] = None,
) -> None:
    """Start the server in the foreground."""
    import uvicorn

    from llamafarm.api import create_app
    from llamafarm.settings import Settings

    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s"
    )
    err.print(f"llamafarm {__version__}: data in {settings.data_dir}")
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )


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
    body = ctx.obj.post(
        f"/v1/projects/{_segment(namespace)}", json={"name": name, "config_template": template}
    )
    target.write_text(dump_document(body["project"]["config"]), encoding="utf-8")
    out.print(f"Created project {namespace}/{name} and wrote {target}")


@app.command()
def version(ctx: typer.Context) -> None:
    """Print the CLI's version and, if it answers, the server's."""
    out.print(f"lf {__version__}")
    client: ApiClient = ctx.obj
    try:
        info = client.get("/info")
    except CliError:
        out.print(f"server: not reachable at {client.base_url}")
        return
    out.print(f"server {info['version']} at {client.base_url} (data: {info['data_directory']})")


@projects_app.command("list")
def list_projects(
    ctx: typer.Context,
    namespace: Annotated[str, typer.Argument(help="Namespace to list.")] = DEFAULT_NAMESPACE,
) -> None:
    """List the projects of a namespace."""
    body = ctx.obj.get(f"/v1/projects/{_segment(namespace)}")
    table = Table(title=f"Projects in {namespace} ({body['total']})")
    for column in ("name", "default model", "databases", "datasets"):
        table.add_column(column)
    for project in body["projects"]:
        config = project["config"]
        table.add_row(
            project["name"],
            _default_model(config),
            str(len((config.get("rag") or {}).get("databases") or [])),
            str(len(config.get("datasets") or [])),
        )
    out.print(table)


@projects_app.command("show")
def show_project(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="NAMESPACE/NAME")]
) -> None:
    """Print a project's llamafarm.yaml."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise CliError(f"Expected NAMESPACE/NAME, got {ref!r}")
    body = ctx.obj.get(f"/v1/projects/{_segment(namespace)}/{_segment(name)}")
    out.print(f"# {namespace}/{name}")
    out.print(dump_document(body["project"]["config"]), markup=False, highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of llamafarm.yaml."""
    print(json_schema())


def _segment(value: str) -> str:
    """Quote a name for a URL path so the server, not the URL parser, judges it."""
    return quote(value, safe="")


def _default_model(config: dict[str, Any]) -> str:
    runtime = config.get("runtime") or {}
    models = runtime.get("models") or []
    chosen = next((m for m in models if m.get("name") == runtime.get("default_model")), None)
    chosen = chosen or (models[0] if models else runtime)
    return f"{chosen.get('provider', '?')}:{chosen.get('model', '?')}"


def run() -> None:
    """Entry point: CliError exits 1 with its message on stderr."""
    try:
        app()
    except CliError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        sys.exit(1)
