"""`lf datasets ...` and `lf tasks ...`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import ProjectOption, client, out, project_path, segment
from llamafarm.cli.files import collect_files, parser_filter
from llamafarm.formats import human_size

datasets_app = typer.Typer(no_args_is_help=True, help="Datasets: create, upload, process.")
tasks_app = typer.Typer(no_args_is_help=True, help="Background tasks: progress and cancel.")

Project = Annotated[str | None, ProjectOption]
FINISHED = {"SUCCESS", "FAILURE", "REVOKED"}
STALL_SECONDS = 10.0


@datasets_app.command("list")
def list_datasets(ctx: typer.Context, project: Project = None) -> None:
    """List the project's datasets with their files."""
    body = client(ctx).get(f"{project_path(project)}/datasets")
    table = Table(title=f"Datasets ({body['total']})")
    for column in ("name", "database", "strategy", "files", "size", "processed"):
        table.add_column(column)
    for dataset in body["datasets"]:
        details = dataset.get("details") or {}
        files = details.get("file_details", [])
        table.add_row(
            dataset["name"],
            dataset["database"],
            dataset["data_processing_strategy"],
            str(len(dataset["files"])),
            human_size(details.get("total_size_bytes", 0)),
            f"{sum(f.get('processed', False) for f in files)}/{len(files)}",
        )
    out.print(table)


@datasets_app.command("create")
def create_dataset(
    ctx: typer.Context,
    name: str,
    files: Annotated[
        list[str] | None, typer.Argument(help="Files, glob patterns or folders to upload.")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="Data processing strategy.")] = None,
    database: Annotated[str | None, typer.Option(help="RAG database.")] = None,
    process: Annotated[bool, typer.Option("--process", help="Process when uploaded.")] = False,
    project: Project = None,
) -> None:
    """Create a dataset, then upload FILES to it; strategy and database default to the
    project's only one."""
    api, path = client(ctx), project_path(project)
    if strategy is None or database is None:
        known = api.get(f"{path}/datasets/strategies")
        # The built-in universal_rag is always listed: the project's own strategy comes first.
        own = [s for s in known["data_processing_strategies"] if s != "universal_rag"]
        strategy = strategy or _only(own or ["universal_rag"], "--strategy")
        database = database or _only(known["databases"], "--database")
    body = {"name": name, "data_processing_strategy": strategy, "database": database}
    api.post(f"{path}/datasets", json=body)
    out.print(f"Created dataset {name} (strategy {strategy}, database {database})")
    if files:
        _upload_and_process(api, path, name, files, process=process)


@datasets_app.command("delete")
def delete_dataset(ctx: typer.Context, name: str, project: Project = None) -> None:
    """Delete a dataset, its files and its chunks."""
    body = client(ctx).request("DELETE", f"{project_path(project)}/datasets/{segment(name)}")
    out.print(f"Deleted dataset {name} ({len(body['dataset']['files'])} file(s))")


@datasets_app.command("upload")
def upload(
    ctx: typer.Context,
    name: str,
    files: Annotated[list[str], typer.Argument(help="Files, glob patterns or folders.")],
    process: Annotated[bool, typer.Option("--process", help="Process when uploaded.")] = False,
    project: Project = None,
) -> None:
    """Upload files to a dataset (the same content twice is stored once); a folder uploads
    every file below it that a parser of the dataset's strategy handles."""
    api, path = client(ctx), project_path(project)
    _upload_and_process(api, path, name, files, process=process)


def _upload_and_process(
    api: ApiClient, path: str, name: str, patterns: list[str], *, process: bool
) -> None:
    paths = collect_files(patterns, accepts=lambda: parser_filter(api, path, name))
    failures = _upload_all(api, path, name, paths)
    out.print(f"Uploaded {len(paths) - failures} of {len(paths)} file(s) to {name}")
    if process:
        _process_and_follow(api, path, name)
    if failures:
        raise typer.Exit(1)


def _upload_all(api: ApiClient, path: str, name: str, paths: list[Path]) -> int:
    """Upload each file with a progress bar; the number that failed."""
    failures = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out
    ) as bar:
        job = bar.add_task("Uploading", total=len(paths))
        for file in paths:
            bar.update(job, description=f"Uploading {file.name}")
            try:
                with file.open("rb") as handle:
                    result = api.post(
                        f"{path}/datasets/{segment(name)}/data", files={"file": (file.name, handle)}
                    )
            except CliError as exc:
                failures += 1
                bar.console.print(f"[red]{file}: {exc}[/red]", highlight=False)
            else:
                note = " (duplicate, skipped)" if result.get("skipped") else ""
                bar.console.print(f"{file}  {result['hash'][:12]}{note}", highlight=False)
            bar.advance(job)
    return failures


@datasets_app.command("process")
def process(
    ctx: typer.Context,
    name: str,
    wait: Annotated[bool, typer.Option(help="Follow progress until done.")] = True,
    project: Project = None,
) -> None:
    """Parse, chunk, embed and store the dataset's files in the background."""
    api, path = client(ctx), project_path(project)
    if wait:
        _process_and_follow(api, path, name)
    else:
        accepted = api.post(
            f"{path}/datasets/{segment(name)}/actions", json={"action_type": "process"}
        )
        out.print(f"Queued task {accepted['task_id']}")


@tasks_app.command("show")
def show_task(ctx: typer.Context, task_id: str, project: Project = None) -> None:
    """Show a task's state and per-file outcomes."""
    body = client(ctx).get(f"{project_path(project)}/tasks/{segment(task_id)}")
    print_task(body)


@tasks_app.command("cancel")
def cancel_task(ctx: typer.Context, task_id: str, project: Project = None) -> None:
    """Cancel a task: queued files are dropped, stored ones reverted."""
    body = client(ctx).request("DELETE", f"{project_path(project)}/tasks/{segment(task_id)}")
    out.print(body["message"])


def _process_and_follow(api: ApiClient, path: str, name: str) -> None:
    accepted = api.post(f"{path}/datasets/{segment(name)}/actions", json={"action_type": "process"})
    out.print(f"Processing {name}: task {accepted['task_id']}")
    [body] = follow_tasks(api, path, [accepted["task_id"]])
    print_task(body)
    if body["state"] != "SUCCESS":
        raise typer.Exit(1)


def follow_tasks(api: ApiClient, path: str, task_ids: list[str]) -> list[dict[str, Any]]:
    """Poll the project's tasks, one progress bar each, until all are finished; their reports."""
    reports: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out
    ) as bar:
        jobs = {task_id: bar.add_task("Processing", total=None) for task_id in task_ids}
        waited = 0.0
        while True:
            for task_id in task_ids:
                if reports.get(task_id, {}).get("state") in FINISHED:
                    continue
                body = reports[task_id] = api.get(f"{path}/tasks/{segment(task_id)}")
                meta = body["meta"]
                doing = "Reindexing" if meta.get("kind") == "reindex" else "Processing"
                bar.update(
                    jobs[task_id],
                    description=f"{doing} {meta.get('dataset') or ''}".rstrip(),
                    total=meta["total"],
                    completed=meta["current"],
                )
            states = [reports[task_id]["state"] for task_id in task_ids]
            if all(state in FINISHED for state in states):
                break
            if "PENDING" in states and waited >= STALL_SECONDS and not _worker_alive(api):
                pending = next(t for t in task_ids if reports[t]["state"] == "PENDING")
                bar.console.print(
                    "[yellow]No ingestion worker is running: the files wait in the queue. "
                    "Start one with `lf worker` (or `lf start`), or press Ctrl-C; "
                    f"`lf tasks show {pending}` shows progress later.[/yellow]"
                )
                waited = -float("inf")  # say it once
            time.sleep(0.5)
            waited += 0.5
    return [reports[task_id] for task_id in task_ids]


def _worker_alive(api: ApiClient) -> bool:
    try:
        components = api.get("/health")["components"]
    except CliError:
        return True  # /health answered 503: something is wrong, but not known to be this
    return any(c["name"] == "worker" and c["status"] == "healthy" for c in components)


def print_task(body: dict[str, Any]) -> None:
    meta = body["meta"]
    table = Table(
        title=f"Task {body['task_id']}: {body['state']} ({meta['current']}/{meta['total']})"
    )
    for column in ("file", "state", "chunks", "error"):
        table.add_column(column)
    for item in meta["files"]:
        table.add_row(item["filename"], item["state"], str(item["chunks"]), item["error"] or "")
    out.print(table)
    if body.get("error"):
        out.print(f"[red]{body['error']}[/red]", highlight=False)


def _only(choices: list[str], option: str) -> str:
    if len(choices) == 1:
        return choices[0]
    raise CliError(f"Pass {option}: the project has {', '.join(choices) or 'none'}")
