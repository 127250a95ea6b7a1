"""The index fingerprint: what decides an embedder's vectors, and nothing else."""

from __future__ import annotations

from typing import Any

from llamafarm.config.models import EmbeddingStrategy
from llamafarm.rag.index import fingerprint_of


def of(kind: str, **config: Any) -> str:
    return fingerprint_of(EmbeddingStrategy(name="e", type=kind, config=config))


def test_the_same_vectors_have_the_same_fingerprint() -> None:
    bundled = of("UniversalEmbedder", model="all-MiniLM-L6-v2", dimension=384, batch_size=32)
    assert of("UniversalEmbedder") == bundled  # defaults written out or left out
    assert of("UniversalEmbedder", normalize=True, threads=2, batch_size=8) == bundled
    assert of("UniversalEmbedder", model="sentence-transformers/all-MiniLM-L6-v2") == bundled
    assert of("HuggingFaceEmbedder", model_name="all-MiniLM-L6-v2", device="cpu") == bundled
    remote = of("OllamaEmbedder", model="nomic-embed-text", base_url="http://a:11434")
    assert of("OllamaEmbedder", model="nomic-embed-text", timeout=5, batch_size=4) == remote


def test_what_changes_the_vectors_changes_the_fingerprint() -> None:
    bundled = of("UniversalEmbedder")
    changed = [
        of("UniversalEmbedder", normalize=False),
        of("UniversalEmbedder", max_length=128),
        of("OpenAIEmbedder", model="all-MiniLM-L6-v2"),
        of("OllamaEmbedder", model="nomic-embed-text"),
        of("OllamaEmbedder", model="nomic-embed-text", dimension=256),
    ]
    assert len({bundled, *changed}) == len(changed) + 1
