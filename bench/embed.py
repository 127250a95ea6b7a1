"""Throughput of the bundled embedder: texts/s and tokens/s by batch size, sorted or not."""

from __future__ import annotations

import argparse
import random
import time

from tokenizers import Tokenizer

from llamafarm.rag.embedders import UniversalEmbedder
from llamafarm.rag.embedders.universal import bundled_files

VOCABULARY = (
    "the a of and to in is that for it as with was on be by this are from at or an have not "
    "which one all were when there can been has more if will their would so no what about "
    "model vector search document retrieval query embedding index database chunk server local "
    "river mountain engine protein invoice harbour violin glacier ledger orbit theorem voltage"
)


def paragraphs(count: int, seed: int) -> list[str]:
    """Paragraphs of 20 to 220 words: most fit in 256 tokens, a few are cut."""
    rng, words = random.Random(seed), VOCABULARY.split()
    texts = []
    for _ in range(count):
        sentences = [
            " ".join(rng.choices(words, k=rng.randint(6, 22))).capitalize() + "."
            for _ in range(rng.randint(2, 10))
        ]
        texts.append(" ".join(sentences))
    return texts


def run(embedder: UniversalEmbedder, texts: list[str], *, sort: bool) -> float:
    """Seconds to embed all texts; unsorted means batches in input order, as they come."""
    start = time.perf_counter()
    if sort:
        embedder.embed(texts)  # sorts by length across the whole call
    else:
        for i in range(0, len(texts), embedder.batch_size):
            embedder.embed(texts[i : i + embedder.batch_size])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--threads", type=int, default=None, help="default: the CPUs available")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts = paragraphs(args.texts, args.seed)
    tokenizer = Tokenizer.from_file(str(bundled_files()[1]))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts))
    config = {"threads": args.threads} if args.threads else {}
    warm = UniversalEmbedder(config)
    warm.embed(texts[:8])  # load the model and warm up outside the timings

    print(f"{len(texts)} texts, {tokens} tokens ({tokens / len(texts):.0f} per text, max 256)")
    print(f"{'batch':>5}  {'order':<8} {'seconds':>8} {'texts/s':>8} {'tokens/s':>9}")
    for batch_size in args.batch_sizes:
        embedder = UniversalEmbedder({**config, "batch_size": batch_size})
        for sort in (False, True):
            seconds = run(embedder, texts, sort=sort)
            order = "sorted" if sort else "unsorted"
            print(
                f"{batch_size:>5}  {order:<8} {seconds:>8.2f} {len(texts) / seconds:>8.1f} "
                f"{tokens / seconds:>9.0f}"
            )
    print(f"onnxruntime intra-op threads: {warm.threads}")


if __name__ == "__main__":
    main()
