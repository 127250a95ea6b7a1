"""`lf projects ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import client, out, segment, split_ref
from llamafarm.config import dump_document, read_document
from llamafarm.errors import ConfigInvalid
from llamafarm.names import DEFAULT_NAMESPACE

projects_app = typer.Typer(no_args_is_help=True, help="List, inspect, apply and delete projects.")


@projects_app.command("list")
def list_projects(
    ctx: typer.Context,
    namespace: Annotated[str, typer.Argument(help="Namespace to list.")] = DEFAULT_NAMESPACE,
) -> None:
    """List the projects of a namespace."""
    body = client(ctx).get(f"/v1/projects/{segment(namespace)}")
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
    namespace, name = split_ref(ref)
    body = client(ctx).get(f"/v1/projects/{segment(namespace)}/{segment(name)}")
    out.print(f"# {namespace}/{name}")
    out.print(dump_document(body["project"]["config"]), markup=False, highlight=False)


@projects_app.command("delete")
def delete_project(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NAMESPACE/NAME")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a project with its config, uploaded files and stored vectors (no undo)."""
    namespace, name = split_ref(ref)
    if not yes:
        typer.confirm(
            f"Delete project {namespace}/{name} with all its files and vectors?", abort=True
        )
    client(ctx).request("DELETE", f"/v1/projects/{segment(namespace)}/{segment(name)}")
    out.print(f"Deleted project {namespace}/{name}", highlight=False)


@projects_app.command("apply")
def apply_project(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The llamafarm.yaml to send.")] = Path(
        "llamafarm.yaml"
    ),
) -> None:
    """Make the server's project what FILE says (its `namespace` and `name`): created if new,
    replaced if not. A LlamaFarm project file is sent as it is; the server's warnings (keys it
    accepts but does not act on) are printed."""
    try:
        document = read_document(file)
    except (ConfigInvalid, OSError) as exc:
        raise CliError(f"{file}: {getattr(exc, 'detail', exc)}") from exc
    namespace, name = str(document.get("namespace", "")), str(document.get("name", ""))
    if not namespace or not name:
        raise CliError(f"{file} needs a namespace and a name")
    api, path = client(ctx), f"/v1/projects/{segment(namespace)}/{segment(name)}"
    created = api.get(path, accept=(404,)).get("project") is None
    if created:  # the smallest template, replaced at once by the file
        api.post(
            f"/v1/projects/{segment(namespace)}", json={"name": name, "config_template": "server"}
        )
    try:
        body = api.request("PUT", path, json={"config": document})
    except CliError:
        if created:  # leave nothing behind that the file did not ask for
            api.request("DELETE", path)
        raise
    out.print(
        f"{'Created' if created else 'Updated'} project {namespace}/{name} from {file}",
        highlight=False,
    )
    for warning in body["project"]["warnings"]:
        out.print(f"warning: {warning}", markup=False, highlight=False)


def _default_model(config: dict[str, Any]) -> str:
    runtime = config.get("runtime") or {}
    models = runtime.get("models") or []
    chosen = next((m for m in models if m.get("name") == runtime.get("default_model")), None)
    chosen = chosen or (models[0] if models else runtime)
    return f"{chosen.get('provider', '?')}:{chosen.get('model', '?')}"
