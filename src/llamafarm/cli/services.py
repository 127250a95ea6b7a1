"""`lf services status`: the health of the server and what it depends on, in one table."""

from __future__ import annotations

import typer
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import client, out

services_app = typer.Typer(no_args_is_help=True, help="The server and the services it uses.")

COLOURS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
LABELS = {
    "api": "server",
    "data_dir": "data directory",
    "state_db": "state database",
    "worker": "ingestion worker",
    "broker": "task broker",
    "model_server": "model server",
}
"""Names for the components `/health` reports; one it adds later shows under its own name."""


@services_app.command("status")
def status(ctx: typer.Context) -> None:
    """Server, worker, state database, broker and model server health; exits 1 when the
    server is unreachable or something is unhealthy."""
    api = client(ctx)
    table = Table(title=f"llamafarm at {api.base_url}")
    for column in ("service", "status", "latency", "details"):
        table.add_column(column)
    try:
        body = api.request("GET", "/health", accept=(503,))
    except CliError as exc:
        table.add_row("server", "[red]unreachable[/red]", "", str(exc))
        out.print(table)
        raise typer.Exit(1) from exc
    for component in body["components"]:
        state = component["status"]
        table.add_row(
            LABELS.get(component["name"], component["name"]),
            f"[{COLOURS.get(state, 'white')}]{state}[/]",
            f"{component['latency_ms']:.0f} ms",
            component["message"],
        )
    out.print(table)
    out.print(f"overall: {body['status']}", highlight=False)
    if body["status"] == "unhealthy":
        raise typer.Exit(1)
