"""`lf config ...`: the schema of `llamafarm.yaml`, checking a file offline, upgrading it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llamafarm.cli.client import CliError
from llamafarm.cli.common import err, out
from llamafarm.cli.config_check import check_file
from llamafarm.cli.upgrade import unified_diff, upgrade_text
from llamafarm.config import ConfigPolicy, json_schema
from llamafarm.errors import ConfigInvalid

config_app = typer.Typer(no_args_is_help=True, help="llamafarm.yaml: schema, check, upgrade.")

FileArgument = Annotated[Path, typer.Argument(help="The llamafarm.yaml to read.")]


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of llamafarm.yaml."""
    print(json_schema())


@config_app.command("check")
def check(file: FileArgument = Path("llamafarm.yaml")) -> None:
    """Validate a file as the server would (this machine's LF_* settings are the policy);
    each problem with its path and a fix. Exits 1 when there are problems."""
    if not file.is_file():
        raise CliError(f"No such file: {file}")
    result = check_file(file, _policy())
    for problem in result.problems:
        # One line each, never wrapped: people grep and paste these.
        _line(f"[red]✗[/red] {escape(problem.path)}: {escape(problem.message)}")
        _line(f"    fix: {escape(problem.hint)}")
    for warning in result.warnings:
        _line(f"[yellow]![/yellow] {escape(warning)}")
    if result.problems:
        err.print(f"{file}: {len(result.problems)} problem(s)")
        raise typer.Exit(1)
    out.print(f"{file}: valid ({len(result.warnings)} warning(s))", highlight=False)


@config_app.command("upgrade")
def upgrade(
    file: FileArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the changes as a diff; write nothing.")
    ] = False,
) -> None:
    """Rewrite older shapes we still accept into the current one, keeping comments; the
    original is kept as FILE.bak."""
    try:
        before = file.read_text(encoding="utf-8")
        after, changes = upgrade_text(before)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read {file}: {exc}") from exc
    except ConfigInvalid as exc:
        raise CliError(f"{file}: {exc}") from exc
    if not changes:
        out.print(f"{file} is already in the current shape", highlight=False)
        return
    if dry_run:
        print(unified_diff(before, after, file.name), end="")
        return
    backup = file.with_name(file.name + ".bak")
    shutil.copy2(file, backup)
    file.write_text(after, encoding="utf-8")
    for change in changes:
        out.print(f"  {change}", highlight=False, markup=False)
    out.print(f"Upgraded {file} (the original is in {backup})", highlight=False)


def _line(text: str) -> None:
    out.print(text, highlight=False, soft_wrap=True)


def _policy() -> ConfigPolicy:
    """The policy a server started here would use."""
    from llamafarm.models.policy import config_policy
    from llamafarm.settings import Settings

    try:
        return config_policy(Settings())
    except ValueError as exc:
        raise CliError(f"Invalid settings: {exc}") from exc
