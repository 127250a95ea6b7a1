"""`lf rag ...`: query a project's RAG databases, check their health, list them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import ProjectOption, client, out, project_path

rag_app = typer.Typer(no_args_is_help=True, help="RAG: query, health, databases.")

Project = Annotated[str | None, ProjectOption]
Database = Annotated[str | None, typer.Option("--database", "-d", help="Default: the project's.")]
EXCERPT = 160


@rag_app.command("query")
def query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="What to search for.")],
    database: Database = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Results (default 5).")] = None,
    score_threshold: Annotated[
        float | None, typer.Option("--score-threshold", help="Minimum score, 0-1.")
    ] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="Strategy name.")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="KEY=VALUE metadata filter (repeatable)."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Print whole chunks.")] = False,
    project: Project = None,
) -> None:
    """Search a RAG database and print the best chunks with source, page and score."""
    body: dict[str, Any] = {"query": text}
    for key, value in (
        ("database", database),
        ("top_k", top_k),
        ("score_threshold", score_threshold),
        ("retrieval_strategy", strategy),
    ):
        if value is not None:
            body[key] = value
    if filters:
        body["metadata_filters"] = parse_filters(filters)
    answer = client(ctx).post(f"{project_path(project)}/rag/query", json=body)
    table = Table(
        title=f"{answer['total_results']} result(s) from {answer['database_used']} "
        f"({answer['retrieval_strategy_used']}, {answer['processing_time_ms']:.0f} ms)"
    )
    for column in ("#", "score", "source", "page", "text"):
        table.add_column(column, overflow="fold")
    for rank, item in enumerate(answer["results"], start=1):
        metadata = item.get("metadata") or {}
        content = " ".join(str(item["content"]).split())
        if not full and len(content) > EXCERPT:
            content = content[:EXCERPT] + "…"
        page = metadata.get("page")
        table.add_row(
            str(rank),
            f"{item['score']:.3f}",
            str(metadata.get("source", item.get("document_id", ""))),
            "" if page is None else str(page),
            content,
        )
    out.print(table)


@rag_app.command("health")
def health(ctx: typer.Context, database: Database = None, project: Project = None) -> None:
    """Check a database's vector store and embedder."""
    params = {"database": database} if database else None
    report = client(ctx).get(f"{project_path(project)}/rag/health", params=params)
    table = Table(title=f"RAG health of {report['database']}: {report['status']}")
    for column in ("component", "status", "latency ms", "message"):
        table.add_column(column)
    for component in report["components"].values():
        table.add_row(
            component["name"],
            component["status"],
            f"{component['latency']:.1f}",
            component["message"],
        )
    out.print(table)
    if report["status"] == "unhealthy":
        raise typer.Exit(1)


@rag_app.command("databases")
def databases(ctx: typer.Context, project: Project = None) -> None:
    """List the project's RAG databases and their strategies."""
    body = client(ctx).get(f"{project_path(project)}/rag/databases")
    table = Table(title="RAG databases")
    for column in ("name", "type", "default", "embedding", "retrieval strategies"):
        table.add_column(column)
    for item in body["databases"]:
        embedding = next((e["name"] for e in item["embedding_strategies"] if e["is_default"]), "")
        strategies = ", ".join(
            s["name"] + (" (default)" if s["is_default"] else "")
            for s in item["retrieval_strategies"]
        )
        table.add_row(
            item["name"], item["type"], "yes" if item["is_default"] else "", embedding, strategies
        )
    out.print(table)


def parse_filters(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a VALUE is read as YAML, so `page=3` is a number and `a=yes` a bool."""
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--filter expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        filters[key.strip()] = value if isinstance(value, str | int | float | bool) else raw
    return filters
