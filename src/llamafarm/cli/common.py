"""What the CLI's command groups share: consoles, the API client, project resolution."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import typer
import yaml
from rich.console import Console

from llamafarm.cli.client import ApiClient, CliError

out = Console()
err = Console(stderr=True)

ProjectOption = typer.Option(
    "--project",
    "-p",
    help="NAMESPACE/NAME; default: the project of ./llamafarm.yaml.",
    envvar="LF_PROJECT",
)


def client(ctx: typer.Context) -> ApiClient:
    api: ApiClient = ctx.obj
    return api


def segment(value: str) -> str:
    """Quote a name for a URL path so the server, not the URL parser, judges it."""
    return quote(value, safe="")


def split_ref(ref: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise CliError(f"Expected NAMESPACE/NAME, got {ref!r}")
    return namespace, name


def project_path(ref: str | None) -> str:
    """`/v1/projects/{ns}/{name}` for --project, or for the llamafarm.yaml in this folder."""
    if ref:
        namespace, name = split_ref(ref)
    else:
        local = Path.cwd() / "llamafarm.yaml"
        if not local.is_file():
            raise CliError("No --project given and no llamafarm.yaml in this folder")
        try:
            config = yaml.safe_load(local.read_text(encoding="utf-8")) or {}
            namespace, name = str(config["namespace"]), str(config["name"])
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise CliError(f"{local} has no namespace and name: {exc}") from exc
    return f"/v1/projects/{segment(namespace)}/{segment(name)}"
