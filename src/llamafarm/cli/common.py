"""What the CLI's command groups share: consoles, the API client, project resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
import yaml
from rich.console import Console
from typer.core import TyperGroup

from llamafarm.cli.client import ApiClient, CliError

out = Console()
err = Console(stderr=True)

ProjectOption = typer.Option(
    "--project",
    "-p",
    help="NAMESPACE/NAME; default: the project of ./llamafarm.yaml.",
    envvar="LF_PROJECT",
)


GLOBAL_OPTIONS = ("--server-url",)
"""Options of `lf` itself that a user may also write after the subcommand, as in LlamaFarm's
`lf` (`lf projects list --server-url URL`)."""


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global options (with their values) to the front, where click expects them;
    nothing after `--` moves."""
    moved: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in GLOBAL_OPTIONS and index + 1 < len(args):
            moved.extend(args[index : index + 2])
            index += 2
            continue
        if arg.partition("=")[0] in GLOBAL_OPTIONS:
            moved.append(arg)
        else:
            rest.append(arg)
        index += 1
    return moved + rest


class GlobalOptionsGroup(TyperGroup):
    """The root command group: global options are accepted anywhere on the line."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's click Context
        return super().parse_args(ctx, hoist_global_options(args))


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
