"""A BEIR-format folder: `corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/SPLIT.tsv`.

What `lf eval FOLDER` and `bench/retrieval.py` read. Each document becomes a file `{_id}.txt`
(its title, a blank line, its text); the judged queries become a question set whose `relevant`
names those files.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamafarm.errors import BadRequest


@dataclass
class Beir:
    corpus: dict[str, str]
    """Document id -> `title\\n\\ntext`, in corpus order."""
    queries: dict[str, str]
    """Judged query id -> text, in qrels order."""
    qrels: dict[str, dict[str, int]]


def is_beir(folder: Path) -> bool:
    return folder.is_dir() and (folder / "queries.jsonl").is_file() and (folder / "qrels").is_dir()


def file_name(doc_id: str) -> str:
    """The name a corpus document is uploaded under."""
    return f"{doc_id}.txt"


def load_beir(folder: Path, *, split: str = "test", limit: int | None = None) -> Beir:
    """The folder's corpus, and the queries judged in `qrels/{split}.tsv` with their judgements.

    `limit` keeps the first N queries, and a corpus of the documents judged relevant for them
    plus the first documents of the corpus, N * 10 documents in all.
    """
    qrels_path = folder / "qrels" / f"{split}.tsv"
    name = "corpus.jsonl" if (folder / "corpus.jsonl").exists() else "corpus.jsonl.gz"
    for needed in (qrels_path, folder / "queries.jsonl", folder / name):
        if not needed.is_file():
            raise BadRequest(f"{folder} is not a BEIR folder: {needed.name} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        next(handle, None)  # header: query-id corpus-id score
        for number, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or not fields[2].lstrip("-").isdigit():
                raise BadRequest(
                    f"{qrels_path}: line {number}: expected query-id, corpus-id, score"
                )
            query_id, doc_id, score = fields
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    if limit is not None:
        qrels = dict(list(qrels.items())[:limit])
    texts = {str(q["_id"]): str(q["text"]) for q in jsonl(folder / "queries.jsonl")}
    missing = [q for q in qrels if q not in texts]
    if missing:
        raise BadRequest(f"{qrels_path}: queries not in queries.jsonl: {', '.join(missing[:5])}")
    queries = {query_id: texts[query_id] for query_id in qrels}

    corpus = {str(d["_id"]): f"{d.get('title') or ''}\n\n{d['text']}" for d in jsonl(folder / name)}
    if limit is not None:
        keep = {d for judged in qrels.values() for d, score in judged.items() if score > 0}
        for doc_id in corpus:
            if len(keep) >= limit * 10:
                break
            keep.add(doc_id)
        corpus = {d: text for d, text in corpus.items() if d in keep}
    return Beir(corpus, queries, qrels)


def questions_jsonl(beir: Beir) -> str:
    """The queries judged to have a relevant document, as a question set (`relevant`: the
    documents' file names, graded)."""
    lines = [
        json.dumps(
            {
                "id": query_id,
                "query": text,
                "relevant": {file_name(d): g for d, g in beir.qrels[query_id].items()},
            }
        )
        for query_id, text in beir.queries.items()
        if any(g > 0 for g in beir.qrels[query_id].values())
    ]
    return "\n".join(lines) + "\n"


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise BadRequest(f"{path}: line {number}: not JSON ({exc})") from exc
