"""`lf keys`: API keys, for the operator. These act on the state database directly (the same
`--data-dir` / `LF_DATABASE_URL` as `lf start`), not through the API; a running server notices
a created or revoked key within about a second."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import err, out
from llamafarm.errors import LfError
from llamafarm.settings import Settings

if TYPE_CHECKING:
    from llamafarm.state import StateDB

keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys (operator commands: they act on the state database, not the server).",
)

DataDir = Annotated[Path | None, typer.Option(help="Where projects and state live (LF_DATA_DIR).")]


def open_db(data_dir: Path | None) -> StateDB:
    # Imported here: SQLAlchemy would add ~0.2 s to every other `lf` command.
    from llamafarm.state import StateDB

    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return StateDB(settings.state_url, migration_lock_timeout=settings.migration_lock_timeout)
    except LfError as exc:  # MigrationRefused: a newer or locked database
        raise CliError(f"cannot open the state database: {exc.detail}") from exc


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name to tell the key by (list, revoke).")],
    namespace: Annotated[str | None, typer.Option(help="Limit the key to this namespace.")] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The key may query and chat, not change.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a key and print it: it is shown this once, only its hash is stored."""
    from llamafarm.state.keys import create_key

    db = open_db(data_dir)
    try:
        key = create_key(db, name=name, namespace=namespace, read_only=read_only)
    except LfError as exc:
        raise CliError(exc.detail) from exc
    finally:
        db.close()
    print(key)
    scope = f"namespace {namespace}" if namespace else "every namespace"
    access = "read-only" if read_only else "read and write"
    err.print(
        f"Created key {name!r} ({access}, {scope}). Keep it now: it cannot be shown again. "
        "Clients send it as 'Authorization: Bearer <key>' (the CLI: LF_API_KEY)."
    )


@keys_app.command("list")
def list_command(data_dir: DataDir = None) -> None:
    """The keys: name, scope, access and when created (never the keys themselves)."""
    from llamafarm.state.keys import list_keys

    db = open_db(data_dir)
    try:
        keys = list_keys(db)
    finally:
        db.close()
    if not keys:
        out.print("No API keys: the server needs none (unless LF_REQUIRE_AUTH=true).")
        return
    table = Table("name", "starts with", "namespace", "access", "created")
    for key in keys:
        table.add_row(
            key.name,
            key.hint + "…",
            key.namespace or "(all)",
            "read-only" if key.read_only else "read-write",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(key.created_at)),
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")], data_dir: DataDir = None
) -> None:
    """Delete a key; a running server refuses it within about a second."""
    from llamafarm.state.keys import revoke_key

    db = open_db(data_dir)
    try:
        revoke_key(db, name)
    except LfError as exc:
        raise CliError(exc.detail) from exc
    finally:
        db.close()
    out.print(f"Revoked key {name!r}")
