"""`lf eval`: measure a project's retrieval on a question set or a BEIR folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llamafarm.cli.client import ApiClient, CliError
from llamafarm.cli.common import ProjectOption, client, err, out, project_path, segment
from llamafarm.cli.datasets import follow_tasks, print_task
from llamafarm.errors import BadRequest
from llamafarm.rag.beir import Beir, file_name, is_beir, load_beir, questions_jsonl

EVAL_TIMEOUT = 3600.0
"""Seconds: an evaluation runs every question through every strategy in one request."""


def evaluate(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A question set (JSON lines: query, and relevant or expected) or a BEIR folder "
            "(corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)."
        ),
    ],
    database: Annotated[
        str | None, typer.Option("--database", "-d", help="Default: the project's.")
    ] = None,
    strategies: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Retrieval strategy (repeatable); default the database's default.",
        ),
    ] = None,
    worst: Annotated[
        int, typer.Option(min=0, max=100, help="Worst queries to show per strategy.")
    ] = 5,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the whole result here as JSON.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="BEIR: the dataset to ingest the corpus into (default: the folder's "
            "name); created with the project's strategy and the database when missing."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="BEIR: the qrels file to evaluate.")] = "test",
    project: Annotated[str | None, ProjectOption] = None,
) -> None:
    """Run a question set through a database's retrieval strategies: nDCG@10, Recall@10/@100,
    MRR and latency per strategy, and the worst queries with what came back."""
    api, base = client(ctx), project_path(project)
    if path.is_dir():
        if not is_beir(path):
            raise CliError(f"{path} is a folder but not a BEIR one (queries.jsonl, qrels/)")
        try:
            beir = load_beir(path, split=split)
        except BadRequest as exc:
            raise CliError(exc.detail) from exc
        name = dataset or _dataset_name(path)
        ingest_beir(api, base, name, beir, database=database)
        text = questions_jsonl(beir)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"Cannot read {path}: {exc}") from exc
    params: list[tuple[str, str | int]] = [("worst", worst)]
    if database:
        params.append(("database", database))
    params += [("strategy", s) for s in strategies or []]
    slow = ApiClient(api.base_url, api_key=api.api_key, timeout=EVAL_TIMEOUT)
    with out.status(f"Evaluating {text.count(chr(10)) or 1} question(s)…"):
        result = slow.post(
            f"{base}/rag/evaluate",
            params=params,
            content=text.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
    print_evaluation(result)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out.print(f"Wrote {json_path}")


def print_evaluation(result: dict[str, Any]) -> None:
    table = Table(title=f"Retrieval on {result['database']}: {result['questions']} question(s)")
    for column in ("strategy", "nDCG@10", "Recall@10", "Recall@100", "MRR", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in result["strategies"]:
        table.add_row(
            escape(row["strategy"]),
            f"{row['ndcg_10']:.4f}",
            f"{row['recall_10']:.4f}",
            f"{row['recall_100']:.4f}",
            f"{row['mrr']:.4f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
        )
    out.print(table)
    for row in result["strategies"]:
        if not row["worst"]:
            continue
        worst = Table(title=f"Worst queries of {row['strategy']}", show_lines=True)
        for column in ("query", "nDCG@10", "relevant", "came back (grade)"):
            worst.add_column(column, overflow="fold")
        for item in row["worst"]:
            returned = "\n".join(
                f"{r['rank']}. {r['document'] or r['chunk_id']} ({r['grade']})"
                for r in item["returned"]
            )
            worst.add_row(
                escape(f"[{item['id']}] {item['query']}"),
                f"{item['ndcg_10']:.4f}",
                escape(", ".join(item["relevant"])),
                escape(returned),
            )
        out.print(worst)
    unknown = result["unknown_documents"]
    if unknown:
        shown = escape(", ".join(f"{u['document']} (line {u['line']})" for u in unknown[:10]))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        err.print(
            f"[yellow]{len(unknown)} relevant document(s) are not in {result['database']}: "
            f"{shown}{more}[/yellow]",
            highlight=False,
        )
    if result["skipped"]:
        err.print(
            f"[yellow]{len(result['skipped'])} question(s) skipped, none of their relevant "
            f"documents is in the database: {escape(', '.join(result['skipped'][:10]))}[/yellow]",
            highlight=False,
        )


def ingest_beir(
    api: ApiClient, base: str, dataset: str, beir: Beir, *, database: str | None = None
) -> None:
    """Upload the corpus documents the dataset lacks (as `{_id}.txt`) and process them; create
    the dataset first when it is missing. Nothing to do when all are processed already."""
    found = [d for d in api.get(f"{base}/datasets")["datasets"] if d["name"] == dataset]
    if not found:
        known = api.get(f"{base}/datasets/strategies")
        own = [s for s in known["data_processing_strategies"] if s != "universal_rag"]
        strategy = (own or ["universal_rag"])[0]
        target = database or (known["databases"] or [None])[0]
        if target is None:
            raise CliError("The project has no RAG database to ingest the corpus into")
        body = {"name": dataset, "data_processing_strategy": strategy, "database": target}
        api.post(f"{base}/datasets", json=body)
        out.print(f"Created dataset {dataset} (strategy {strategy}, database {target})")
        files: list[dict[str, Any]] = []
    else:
        files = found[0]["details"]["file_details"]
        if database and found[0]["database"] != database:
            raise CliError(
                f"Dataset {dataset} stores into {found[0]['database']}, not {database}: "
                "pass --dataset to choose another"
            )
    have = {f["original_filename"]: f for f in files}
    wanted = [file_name(doc_id) for doc_id in beir.corpus]
    if all(name in have and have[name]["processed"] for name in wanted):
        out.print(f"Dataset {dataset}: all {len(wanted)} documents already ingested")
        return
    missing = [(file_name(d), text) for d, text in beir.corpus.items() if file_name(d) not in have]
    with out.status(f"Uploading {len(missing)} document(s) to {dataset}…"):
        for name, text in missing:
            api.post(
                f"{base}/datasets/{segment(dataset)}/data",
                files={"file": (name, text.encode("utf-8"))},
            )
    accepted = api.post(
        f"{base}/datasets/{segment(dataset)}/actions", json={"action_type": "process"}
    )
    [report] = follow_tasks(api, base, [accepted["task_id"]])
    if report["state"] != "SUCCESS":
        print_task(report)
        raise CliError(f"Processing {dataset} ended {report['state']}")


def _dataset_name(folder: Path) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "_", folder.resolve().name.lower()).strip("_-")
    return name[:64].strip("_-") or "beir"
