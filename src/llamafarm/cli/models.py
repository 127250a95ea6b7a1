"""`lf models ...`: the local model cache."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from llamafarm.cli.client import CliError
from llamafarm.cli.common import client, out
from llamafarm.formats import human_size

models_app = typer.Typer(no_args_is_help=True, help="The local model cache: list, pull, rm.")

Provider = Annotated[str, typer.Option("--provider", help='Only "universal" has a cache.')]
DEFAULT_PROVIDER = "universal"


def model_path(name: str) -> str:
    """`/v1/models/ORG/NAME`: the id's '/' stays a separator; the server judges the rest."""
    return "/v1/models/" + quote(name, safe="/")


@models_app.command("list")
def list_models(ctx: typer.Context, provider: Provider = DEFAULT_PROVIDER) -> None:
    """Models in the local Hugging Face cache, and those bundled with llamafarm; then the
    chat models the server has loaded now."""
    body = client(ctx).get("/v1/models", params={"provider": provider})
    models = body["data"]
    table = Table(title=f"{len(models)} model(s)")
    for column in ("model", "size", "modified", "revisions", "source", "loaded"):
        table.add_column(column, overflow="fold")
    for model in models:
        table.add_row(
            model["model_id"],
            model["size_human"],
            model["last_modified"],
            ", ".join(model["revisions"]),
            f"bundled ({model['package']})" if model.get("bundled") else "cache",
            "yes" if model.get("loaded") else "",
        )
    out.print(table)
    loaded = body.get("loaded") or []
    if loaded:
        table = Table(title=f"{len(loaded)} loaded chat model(s)")
        for column in ("model", "memory", "slots", "context", "in use", "idle"):
            table.add_column(column, overflow="fold")
        for model in loaded:
            table.add_row(
                model["model"],
                human_size(model["memory_bytes"]),
                str(model["slots"]),
                str(model["context"]),
                str(model["in_use"]),
                "kept loaded" if model["keep_loaded"] else f"{model['idle_seconds']:.0f} s",
            )
        out.print(table)


@models_app.command("pull")
def pull(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(help="A Hugging Face model id, ORG/NAME or ORG/NAME:QUANT (one GGUF file)."),
    ],
    provider: Provider = DEFAULT_PROVIDER,
) -> None:
    """Download a model from the Hugging Face Hub into the local cache."""
    body = {"provider": provider, "model_name": name}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=out,
    ) as bar:
        job = bar.add_task(f"Pulling {name}", total=None)
        for _, event in client(ctx).events("/v1/models/download", json_body=body, headers={}):
            kind = event.get("event")
            if kind == "progress":
                bar.update(job, total=event["total"] or None, completed=event["downloaded"])
            elif kind == "error":
                raise CliError(str(event.get("message")))
            elif kind == "complete":
                if event.get("cached"):
                    bar.remove_task(job)  # nothing was fetched: no bar to show
                break
        else:
            raise CliError(f"The server ended the download of {name} without a result")
    note = " (already cached)" if event.get("cached") else ""
    out.print(f"Pulled {name}{note}: {event.get('path', '')}", highlight=False)


@models_app.command("rm")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A model id as `lf models list` shows it.")],
    provider: Provider = DEFAULT_PROVIDER,
) -> None:
    """Delete a model from the local cache (bundled models cannot be deleted)."""
    answer = client(ctx).request("DELETE", model_path(name), params={"provider": provider})
    out.print(
        f"Deleted {answer['model_name']}: {answer['revisions_deleted']} revision(s), "
        f"{human_size(answer['size_freed'])} freed from {answer['path']}",
        highlight=False,
    )
