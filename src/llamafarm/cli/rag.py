"""`lf rag ...`: query a project's RAG databases, check their health, list them, look into
them (stats, stored documents), clear a dataset's chunks, reindex, export, import and compact
a database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import ProjectOption, client, out, project_path, segment
from llamafarm.cli.datasets import follow_tasks, print_task
from llamafarm.formats import human_size

rag_app = typer.Typer(
    no_args_is_help=True,
    help="RAG: query, health, databases, stats, documents, clear, reindex, export, import, "
    "compact.",
)

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


@rag_app.command("stats")
def stats(ctx: typer.Context, database: Database = None, project: Project = None) -> None:
    """A database's chunks, documents, size on disk, embedder and index fingerprint."""
    params = {"database": database} if database else None
    found = client(ctx).get(f"{project_path(project)}/rag/stats", params=params)
    embedder = found["embedder"]
    cache = found["embedding_cache"]
    rows = [
        ("chunks", str(found["chunk_count"])),
        ("documents", str(found["document_count"])),
        ("size on disk", human_size(found["collection_size_bytes"])),
        ("embedder", f"{embedder['strategy']} ({embedder['type']} {embedder['model'] or ''})"),
        ("dimension", str(found["embedding_dimension"])),
        ("distance", found["distance_metric"]),
        ("fingerprint", found["fingerprint"]),
        ("index built by", found["index_fingerprint"] or "nothing stored yet"),
        ("needs reindex", "YES" if found["needs_reindex"] else "no"),
        ("last write", found["last_updated"] or "never"),
        ("embedding cache", f"{cache['entries']} vectors, {human_size(cache['size_bytes'])}"),
        ("datasets", ", ".join(found["datasets"]) or "none"),
    ]
    table = Table(title=f"RAG stats of {found['database']}")
    table.add_column("")
    table.add_column("")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@rag_app.command("list")
def list_documents(
    ctx: typer.Context,
    database: Database = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Documents per page.")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Documents to skip.")] = 0,
    project: Project = None,
) -> None:
    """The documents stored in a database, with their chunk counts."""
    base = project_path(project)
    name = database or client(ctx).get(f"{base}/rag/databases")["default_database"]
    if not name:
        raise CliError("The project has no RAG databases")
    documents = client(ctx).get(
        f"{base}/rag/databases/{segment(name)}/documents",
        params={"limit": limit, "offset": offset},
    )
    table = Table(title=f"{len(documents)} document(s) in {name} (from {offset})")
    for column in ("file", "dataset", "chunks", "size", "parser", "stored", "hash"):
        table.add_column(column, overflow="fold")
    for item in documents:
        table.add_row(
            item["filename"],
            str(item["metadata"].get("dataset", "")),
            str(item["chunk_count"]),
            human_size(item["size_bytes"]),
            item["parser_used"],
            item["date_ingested"],
            item["id"][:12],
        )
    out.print(table)


@rag_app.command("clear")
def clear(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset whose chunks go.")],
    file_hash: Annotated[
        str | None, typer.Option("--file", help="Only this file's chunks (its hash).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    project: Project = None,
) -> None:
    """Remove a dataset's chunks (or one file's) from its database; the files stay, to
    process again (unchanged chunks then reuse their cached vectors)."""
    what = f"file {file_hash}" if file_hash else f"every file of dataset {dataset}"
    if not yes:
        typer.confirm(f"Remove the chunks of {what}?", abort=True)
    body: dict[str, Any] = {"action_type": "delete_dataset_chunks"}
    if file_hash:
        body = {"action_type": "delete_file_chunks", "file_hash": file_hash}
    answer = client(ctx).post(
        f"{project_path(project)}/datasets/{segment(dataset)}/actions", json=body
    )
    if file_hash:
        out.print(f"Removed {answer['deleted_chunks']} chunk(s) of {file_hash}", highlight=False)
    else:
        out.print(
            f"Removed {answer['total_deleted_chunks']} chunk(s) of "
            f"{answer['total_files_cleared']} file(s) of {dataset}",
            highlight=False,
        )


@rag_app.command("reindex")
def reindex(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database to rebuild.")],
    wait: Annotated[bool, typer.Option(help="Follow progress until done.")] = True,
    project: Project = None,
) -> None:
    """Rebuild a database's index with its configured embedder beside the serving one; queries
    switch to it when it is complete (cancel with `lf tasks cancel ID`)."""
    api, path = client(ctx), project_path(project)
    accepted = api.post(f"{path}/rag/databases/{segment(database)}/reindex")
    out.print(f"Reindexing {database}: task {accepted['task_id']}", highlight=False)
    if not wait:
        return
    [body] = follow_tasks(api, path, [accepted["task_id"]])
    print_task(body)
    if body["state"] != "SUCCESS":
        raise typer.Exit(1)


@rag_app.command("export")
def export(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database to export.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default: DATABASE.lfrag.zip.")
    ] = None,
    project: Project = None,
) -> None:
    """Write a database's chunks, vectors and index fingerprint to a portable archive."""
    target = output or Path(f"{database}.lfrag.zip")
    size = client(ctx).download(
        f"{project_path(project)}/rag/databases/{segment(database)}/export", target
    )
    out.print(f"Exported {database} to {target} ({human_size(size)})", highlight=False)


@rag_app.command("import")
def import_(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database to import into.")],
    archive: Annotated[Path, typer.Argument(help="An archive from `lf rag export`.")],
    project: Project = None,
) -> None:
    """Store an exported archive's chunks in a database with the same embedder."""
    if not archive.is_file():
        raise CliError(f"No such file: {archive}")
    with archive.open("rb") as stream:
        found = client(ctx).post(
            f"{project_path(project)}/rag/databases/{segment(database)}/import",
            files={"file": (archive.name, stream, "application/zip")},
        )
    out.print(
        f"Imported {found['imported_chunks']} chunk(s) into {found['database']} "
        f"({found['total_chunks']} in all)",
        highlight=False,
    )


@rag_app.command("compact")
def compact(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="The database to compact.")],
    project: Project = None,
) -> None:
    """Give back the disk space of a database's deleted chunks and collections."""
    found = client(ctx).post(f"{project_path(project)}/rag/databases/{segment(database)}/compact")
    out.print(
        f"Compacted {found['database']}: {human_size(found['bytes_before'])} → "
        f"{human_size(found['bytes_after'])}",
        highlight=False,
    )


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
