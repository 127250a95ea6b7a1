"""`lf examples ...`: bundled example projects."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import client, out, segment
from llamafarm.cli.datasets import follow_tasks, print_task
from llamafarm.names import DEFAULT_NAMESPACE

examples_app = typer.Typer(no_args_is_help=True, help="Bundled example projects: list, import.")


@examples_app.command("list")
def list_examples(ctx: typer.Context) -> None:
    """List the example projects the server offers."""
    examples = client(ctx).get("/v1/examples")["examples"]
    table = Table(title=f"Examples ({len(examples)})")
    for column in ("id", "title", "datasets", "size", "tags"):
        table.add_column(column)
    for example in examples:
        table.add_row(
            example["id"],
            example["title"],
            str(example["dataset_count"]),
            example["data_size_human"],
            ", ".join(example["tags"]),
        )
    out.print(table)


@examples_app.command("import")
def import_example(
    ctx: typer.Context,
    example_id: Annotated[str, typer.Argument(metavar="ID", help="The example's id.")],
    namespace: Annotated[str, typer.Option(help="Namespace of the new project.")] = (
        DEFAULT_NAMESPACE
    ),
    name: Annotated[str | None, typer.Option(help="Project name; default: the id.")] = None,
    process: Annotated[
        bool, typer.Option("--process/--no-process", help="Process the files and follow progress.")
    ] = True,
) -> None:
    """Create a project from an example, upload its files and (by default) process them."""
    api = client(ctx)
    body: dict[str, Any] = {"namespace": namespace, "process": process}
    if name:
        body["name"] = name
    result = api.post(f"/v1/examples/{segment(example_id)}/import-project", json=body)
    ref = f"{result['namespace']}/{result['project']}"
    out.print(f"Imported example {example_id} as project {ref}: {', '.join(result['datasets'])}")
    failed = False
    if result["task_ids"]:
        path = f"/v1/projects/{segment(result['namespace'])}/{segment(result['project'])}"
        for report in follow_tasks(api, path, result["task_ids"]):
            print_task(report)
            failed = failed or report["state"] != "SUCCESS"
    out.print(f"Project: {ref}")
    question = _first_question(api.get("/v1/examples")["examples"], example_id)
    if question:
        quoted = re.sub(r'(["$`\\])', r"\\\1", question)  # safe inside a shell's "..."
        out.print(f'Try: lf chat {ref} "{quoted}"', markup=False, highlight=False)
    if failed:
        raise CliError(f"Some files of {ref} failed to process (see above)")


def _first_question(examples: list[dict[str, Any]], example_id: str) -> str | None:
    example = next((e for e in examples if e["id"] == example_id), None)
    questions = (example or {}).get("questions") or []
    return str(questions[0]) if questions else None
