"""`lf events ...`: a project's event logs (chat completions, processed files)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llamafarm.cli.common import ProjectOption, client, out, project_path, segment

events_app = typer.Typer(no_args_is_help=True, help="Event logs: list, show.")

Project = Annotated[str | None, ProjectOption]


@events_app.command("list")
def list_events(
    ctx: typer.Context,
    type: Annotated[
        str | None, typer.Option("--type", "-t", help="inference or rag_processing.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 10,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    project: Project = None,
) -> None:
    """The project's newest events: time, type, status, what and how long."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if type:
        params["type"] = type
    page = client(ctx).get(f"{project_path(project)}/event_logs", params=params)
    shown = f"{offset + 1}-{offset + len(page['events'])}" if page["events"] else "none"
    table = Table(title=f"Events {shown} of {page['total']}")
    for column in ("time", "type", "status", "what", "ms", "id"):
        table.add_column(column, overflow="fold")
    for event in page["events"]:
        summary = event["summary"]
        table.add_row(
            *map(
                escape,
                (
                    event["timestamp"],
                    event["type"],
                    str(summary.get("status", "")),
                    _what(event["type"], summary),
                    _ms(summary.get("duration_ms")),
                    event["event_id"],
                ),
            )
        )
    out.print(table)


@events_app.command("show")
def show(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="An id from `lf events list`.")],
    project: Project = None,
) -> None:
    """One event: its summary, then its sub-events as a timeline with durations."""
    event = client(ctx).get(f"{project_path(project)}/event_logs/{segment(event_id)}")
    out.print(
        f"[bold]{escape(event['event_id'])}[/bold]  {escape(event['type'])}  {event['timestamp']}"
    )
    for key, value in event["summary"].items():
        if value is not None:
            out.print(f"  {escape(key)}: {escape(str(value))}")
    table = Table(title="Timeline")
    for column in ("at ms", "took ms", "sub-event", "data"):
        table.add_column(column, overflow="fold")
    for sub in event["sub_events"]:
        data = ", ".join(f"{k}={v}" for k, v in (sub.get("data") or {}).items() if v is not None)
        table.add_row(
            _ms(sub["elapsed_ms"]), _ms(sub["duration_ms"]), escape(sub["name"]), escape(data)
        )
    out.print(table)


def _what(kind: str, summary: dict[str, Any]) -> str:
    if kind == "inference":
        tokens = summary.get("tokens")
        return f"{summary.get('model')}" + (f", {tokens} tokens" if tokens else "")
    if kind == "rag_processing":
        return f"{summary.get('file')} -> {summary.get('dataset')}, {summary.get('chunks')} chunks"
    return ""


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else ""
