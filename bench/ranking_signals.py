"""How far the bundled embedder's vectors can take hybrid ranking on a BEIR folder: each dense
signal below fused with BM25 as the server fuses them, its weight fitted on the train queries
and reported on the test queries.

    .venv/bin/python bench/ranking_signals.py PATH_TO_BEIR_FOLDER [--cache DIR]

    e.g. .venv/bin/python bench/ranking_signals.py /work/shared/data/scifact --cache /tmp/signals

Not part of `make bench`: it needs a BEIR folder with `qrels/train.tsv` and `qrels/test.tsv`
(SciFact), and embeds the corpus three times (10 minutes on 2 cores; a rerun on the same
`--cache` only scores). A run that embeds prints how long each kind of text took.

Offline, in this process, with the server's own parts: BM25 from `LexicalIndex` (the lexical
side's scores), vectors from the bundled embedder (`UniversalEmbedder`, 256 tokens a text),
the server's `weighted` fusion (each side its 100 best, a chunk one side lacks at that side's
lowest, as `HybridUniversalStrategy`), nDCG@10 as `lf eval` computes it. Dense signals:
- `document`: the document's one vector (title and text, cut at 256 tokens), what the server
  ranks when a document is one chunk (bench/retrieval.py's `hybrid_weighted`);
- `sentences`: each sentence (the title being one) embedded alone, a document scoring its best;
- `titled sentences`: each sentence of the text embedded after the title, its best;
- `mean of 3`: the three above averaged.
The server stores one vector per chunk; the sentence signals would need a vector per sentence.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llamafarm.ingest.extractors.base import sentences
from llamafarm.rag.beir import Beir, load_beir
from llamafarm.rag.embedders.universal import UniversalEmbedder
from llamafarm.rag.evaluation import measure
from llamafarm.rag.retrieval.hybrid import HybridConfig, Side, weighted
from llamafarm.rag.stores.lexical import LexicalIndex

CANDIDATES = HybridConfig().candidates
ALPHAS = [round(a, 2) for a in np.arange(0.3, 0.71, 0.05)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache", type=Path, help="Keeps the index and vectors for a rerun.")
    args = parser.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lf-signals-"))
    cache.mkdir(parents=True, exist_ok=True)
    splits = {split: load_beir(args.folder, split=split) for split in ("train", "test")}
    corpus = splits["test"].corpus
    doc_ids = list(corpus)
    queries = [(split, qid, text) for split, b in splits.items() for qid, text in b.queries.items()]

    embedder = UniversalEmbedder({})

    def vectors(name: str, texts: list[str]) -> np.ndarray:
        path = cache / f"{name}.npy"
        if not path.exists():
            start = time.perf_counter()
            np.save(path, np.asarray(embedder.embed(texts), np.float32))
            print(f"embedded {len(texts)} {name} in {time.perf_counter() - start:.0f} s")
        loaded: np.ndarray = np.load(path)
        return loaded

    query_vectors = vectors("queries", [text for _, _, text in queries])
    parts: dict[str, list[str]] = {"sentences": [], "titled sentences": []}
    owners: dict[str, list[int]] = {name: [] for name in parts}
    for n, doc_id in enumerate(doc_ids):
        title, _, body = corpus[doc_id].partition("\n\n")
        said = sentences(body) or [title]
        for name, texts in (("sentences", [title, *said]), ("titled sentences", said)):
            for text in texts:
                parts[name].append(f"{title}. {text}" if name == "titled sentences" else text)
                owners[name].append(n)
    dense = {"document": query_vectors @ vectors("document", list(corpus.values())).T}
    for name, texts in parts.items():
        dense[name] = best_of(
            query_vectors @ vectors(name.replace(" ", "_"), texts).T, np.asarray(owners[name])
        )
    dense["mean of 3"] = sum(dense.values()) / 3
    lexical = bm25(cache / "lexical.sqlite", corpus, [text for _, _, text in queries])

    print(
        f"{len(doc_ids)} documents, {len(splits['train'].queries)} train and "
        f"{len(splits['test'].queries)} test queries; nDCG@10, alpha fitted on train"
    )
    print(
        f"{'signal':<18} {'alone train':>12} {'alone test':>11} {'alpha':>6} "
        f"{'hybrid train':>13} {'hybrid test':>12}"
    )
    score = scorer(splits, queries)
    print(
        f"{'BM25':<18} {score('train', lexical.__getitem__):>12.4f} "
        f"{score('test', lexical.__getitem__):>11.4f}"
    )
    for name, matrix in dense.items():
        alone = {split: score(split, by_vector(matrix, doc_ids)) for split in splits}
        fitted = {
            alpha: score("train", by_both(matrix, doc_ids, lexical, alpha)) for alpha in ALPHAS
        }
        alpha = max(fitted, key=lambda a: fitted[a])
        test = score("test", by_both(matrix, doc_ids, lexical, alpha))
        print(
            f"{name:<18} {alone['train']:>12.4f} {alone['test']:>11.4f} {alpha:>6.2f} "
            f"{fitted[alpha]:>13.4f} {test:>12.4f}"
        )


def best_of(similarities: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Each query's best similarity among each document's parts (columns by `owners`)."""
    best = np.full((len(similarities), int(owners.max()) + 1), -1.0, np.float32)
    for row, out in zip(similarities, best, strict=True):
        np.maximum.at(out, owners, row)
    return best


def bm25(path: Path, corpus: dict[str, str], texts: list[str]) -> list[dict[str, float]]:
    """Each query's `CANDIDATES` best BM25 scores by document id, as the server's lexical
    side returns them."""
    index = LexicalIndex(path)
    if not index.exists:
        items = list(corpus.items())
        for start in range(0, len(items), 500):
            batch = items[start : start + 500]
            index.upsert([i for i, _ in batch], [t for _, t in batch], [{}] * len(batch))
    return [{hit.id: hit.score for hit in index.search(text, top_k=CANDIDATES)} for text in texts]


Ranking = Callable[[int], dict[str, float]]
"""A query's scores by document id, from the query's number."""


def top(scores: np.ndarray, doc_ids: list[str]) -> dict[str, float]:
    best = np.argpartition(-scores, CANDIDATES)[:CANDIDATES]
    return {doc_ids[i]: float(scores[i]) for i in best}


def by_vector(dense: np.ndarray, doc_ids: list[str]) -> Ranking:
    return lambda j: top(dense[j], doc_ids)


def by_both(
    dense: np.ndarray, doc_ids: list[str], lexical: list[dict[str, float]], alpha: float
) -> Ranking:
    """The server's `weighted` fusion of the two sides' candidates."""

    def ranking(j: int) -> dict[str, float]:
        words, vector = lexical[j], top(dense[j], doc_ids)
        sides = [
            Side(1 - alpha, words, 0.0 if len(words) < CANDIDATES else min(words.values())),
            Side(alpha, vector, min(vector.values())),
        ]
        return {i: key for i, (key, _) in weighted(sides, HybridConfig()).items()}

    return ranking


def scorer(
    splits: dict[str, Beir], queries: list[tuple[str, str, str]]
) -> Callable[[str, Ranking], float]:
    """Mean nDCG@10 of a ranking over one split's queries."""

    def score(split: str, ranking: Ranking) -> float:
        rankings = {}
        for j, (where, qid, _) in enumerate(queries):
            if where == split:
                scores = ranking(j)
                rankings[qid] = sorted(scores, key=lambda i: (-scores[i], i))[:10]
        measured = measure(splits[split].qrels, rankings)
        return float(np.mean([m["ndcg_cut_10"] for m in measured.values()]))

    return score


if __name__ == "__main__":
    main()
