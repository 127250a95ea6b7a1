"""The bundled ONNX embedder for real, the HTTP embedders against real servers on loopback."""

from __future__ import annotations

import json
import random
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llamafarm.config import parse_config, render_template
from llamafarm.config.models import EmbeddingStrategy
from llamafarm.errors import ConfigInvalid, EmbedderUnavailable
from llamafarm.rag.embedders import (
    EMBEDDERS,
    OllamaEmbedder,
    OpenAIEmbedder,
    UniversalEmbedder,
    create_embedder,
    universal,
)
from llamafarm.rag.embedders.base import HttpEmbedder
from llamafarm.rag.embedders.ollama import ollama_url
from llamafarm.rag.embedders.universal import ATTENTION_BUDGET, bundled_files

VOCABULARY = (
    "river mountain engine protein invoice harbour violin glacier tax ledger orbit pasta "
    "theorem lizard voltage sermon cotton asteroid mortgage rugby enzyme lantern quarry"
)


def sentences(count: int, *, seed: int = 7, words: int = 60) -> list[str]:
    """Distinct texts of very different lengths, so sorting by length reorders them."""
    rng, vocabulary = random.Random(seed), VOCABULARY.split()
    return [" ".join(rng.choices(vocabulary, k=rng.randint(2, words))) for _ in range(count)]


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def minilm() -> UniversalEmbedder:
    return UniversalEmbedder({})


# --- the bundled model ------------------------------------------------------------------------


def test_vectors_are_384_dimensional_and_normalised(minilm: UniversalEmbedder) -> None:
    vectors = minilm.embed(["hello world", "a second, longer sentence about vector search"])
    assert [len(v) for v in vectors] == [384, 384]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.name == "all-MiniLM-L6-v2" and minilm.dimension == 384


def test_identical_texts_give_identical_vectors(minilm: UniversalEmbedder) -> None:
    first, second = minilm.embed(["The cat sat on the mat.", "The cat sat on the mat."])
    (alone,) = minilm.embed(["The cat sat on the mat."])
    assert cosine(first, second) > 0.9999
    assert cosine(first, alone) > 0.9999


def test_paraphrases_are_closer_than_unrelated_sentences(minilm: UniversalEmbedder) -> None:
    pairs = [
        ("A man is playing a guitar.", "Someone is strumming a guitar."),
        ("How do I reset my password?", "I forgot my password and need to change it."),
        ("The invoice is due at the end of the month.", "Payment of the bill is due in 30 days."),
    ]
    unrelated = "The stock market fell sharply today."
    vectors = minilm.embed([text for pair in pairs for text in pair] + [unrelated])
    for i in range(len(pairs)):
        a, b = vectors[2 * i], vectors[2 * i + 1]
        assert cosine(a, b) > 0.5
        assert cosine(a, b) > cosine(a, vectors[-1]) + 0.35


def test_sorting_by_length_keeps_the_input_order(minilm: UniversalEmbedder) -> None:
    texts = sentences(12)
    together = minilm.embed(texts)
    alone = [minilm.embed([text])[0] for text in texts]
    # Masked padding leaves each vector as it is alone, so order mistakes cannot hide.
    assert np.allclose(together, alone, atol=1e-5)


def test_batches_split_and_join_at_their_boundaries() -> None:
    texts = sentences(70, words=12)
    batched = UniversalEmbedder({"batch_size": 32}).embed(texts)
    single = UniversalEmbedder({"batch_size": 70}).embed(texts)
    assert len(batched) == 70
    assert np.allclose(batched, single, atol=1e-5)
    similarity = np.array(batched) @ np.array(single).T
    assert list(similarity.argmax(axis=1)) == list(range(70))


def test_long_texts_run_in_fewer_rows_within_the_attention_budget() -> None:
    embedder = UniversalEmbedder({"batch_size": 32})
    lengths = sorted([10] * 40 + [250] * 20)
    runs = [lengths[part] for part in embedder._batches(lengths)]
    assert [len(run) for run in runs] == [32, 8] + [2] * 10
    assert all(len(run) * run[-1] ** 2 <= ATTENTION_BUDGET for run in runs)
    # A text too long for the budget alone still runs, alone.
    assert [part.stop - part.start for part in embedder._batches([600, 700])] == [1, 1]


def test_a_call_on_a_share_of_the_cpus_takes_that_share_of_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(universal, "default_threads", lambda: 4)

    def runs(threads: int | None) -> list[int]:
        embedder = UniversalEmbedder({} if threads is None else {"threads": threads})
        return [part.stop - part.start for part in embedder._batches([250] * 4)]

    assert runs(None) == runs(4) == runs(8) == [2, 2]  # every CPU (or more): the whole budget
    assert runs(2) == [1, 1, 1, 1]  # half the CPUs: half of it


def test_long_texts_cut_into_runs_keep_their_vectors(minilm: UniversalEmbedder) -> None:
    texts = sentences(12, words=200)  # up to 256 tokens: runs of a few texts
    together = minilm.embed(texts)
    alone = [minilm.embed([text])[0] for text in texts]
    assert np.allclose(together, alone, atol=1e-5)


def shrinks(options: Any) -> bool:
    try:
        return bool(options.get_run_config_entry("memory.enable_memory_arena_shrinkage"))
    except RuntimeError:  # onnxruntime's answer for a key never set
        return False


def test_the_arena_is_shrunk_after_a_calls_last_run_only() -> None:
    embedder = UniversalEmbedder({})
    loaded = embedder._load()
    seen: list[Any] = []

    class Recording:
        def run(self, outputs: Any, feeds: Any, options: Any) -> Any:
            seen.append(options)
            return loaded.session.run(outputs, feeds, options)

    embedder._loaded = loaded._replace(session=Recording())
    texts = sentences(12, words=200)  # runs of a few texts each
    assert np.allclose(embedder.embed(texts), UniversalEmbedder({}).embed(texts), atol=1e-5)
    assert len(seen) > 2
    assert [shrinks(options) for options in seen] == [False] * (len(seen) - 1) + [True]
    seen.clear()
    embedder.embed(["one short text"])  # a call of one run: shrunk after it
    assert [shrinks(options) for options in seen] == [True]


def test_empty_input_gives_no_vectors(minilm: UniversalEmbedder) -> None:
    assert minilm.embed([]) == []


def test_long_texts_are_truncated(minilm: UniversalEmbedder) -> None:
    long = " ".join(sentences(200))  # thousands of tokens
    cut, different_tail = minilm.embed([long, long + " completely different ending " * 50])
    assert len(cut) == 384
    # Everything past the first 256 tokens is dropped, so the tails cannot matter.
    assert cosine(cut, different_tail) > 0.9999
    short = UniversalEmbedder({"max_length": 16})
    assert short.fingerprint() != minilm.fingerprint()
    assert cosine(short.embed([long])[0], cut) < 0.99


def test_concurrent_calls_match_serial_calls(minilm: UniversalEmbedder) -> None:
    batches = [sentences(6, seed=seed, words=20) for seed in range(6)]
    serial = [minilm.embed(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(minilm.embed, batches))
    for expected, got in zip(serial, concurrent, strict=True):
        assert np.allclose(expected, got, atol=1e-6)


def test_fingerprint_names_type_model_and_dimension(minilm: UniversalEmbedder) -> None:
    alias = UniversalEmbedder({"model": "sentence-transformers/all-MiniLM-L6-v2"})
    assert alias.fingerprint() == minilm.fingerprint()
    assert minilm.fingerprint().startswith("UniversalEmbedder:all-MiniLM-L6-v2")
    assert ":384" in minilm.fingerprint()
    minilm.check()


def test_a_model_folder_works_and_its_dimension_is_checked(
    tmp_path: Path, minilm: UniversalEmbedder
) -> None:
    model, tokenizer = bundled_files()
    (tmp_path / "model.onnx").symlink_to(model)
    shutil.copy(tokenizer, tmp_path / "tokenizer.json")
    local = UniversalEmbedder({"model": str(tmp_path)})
    assert local.name == str(tmp_path.resolve())
    assert local.fingerprint() != minilm.fingerprint()
    assert np.allclose(local.embed(["same model"]), minilm.embed(["same model"]), atol=1e-6)
    with pytest.raises(ConfigInvalid, match="384-dimensional"):
        UniversalEmbedder({"model": str(tmp_path), "dimension": 768}).embed(["x"])


def test_a_broken_model_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    shutil.copy(bundled_files()[1], tmp_path / "tokenizer.json")
    embedder = UniversalEmbedder({"model": str(tmp_path)})
    with pytest.raises(EmbedderUnavailable, match="cannot load model"):
        embedder.check()


# --- the factory ------------------------------------------------------------------------------


def strategy(type_: str, **config: Any) -> EmbeddingStrategy:
    return EmbeddingStrategy(name="emb", type=type_, config=config)


def test_the_rag_template_strategy_builds_the_bundled_embedder() -> None:
    config = parse_config(render_template("rag", namespace="a", name="b"))
    assert config.rag is not None
    embedder = create_embedder(config.rag.databases[0].embedding_strategies[0])
    assert isinstance(embedder, UniversalEmbedder)
    assert embedder.batch_size == 32
    assert set(EMBEDDERS) == {
        "UniversalEmbedder",
        "OllamaEmbedder",
        "OpenAIEmbedder",
        "HuggingFaceEmbedder",
        "SentenceTransformerEmbedder",
    }


@pytest.mark.parametrize(
    ("type_", "config", "message"),
    [
        ("SentenceTransformer", {}, r"unknown type 'SentenceTransformer' \(known: HuggingFace"),
        ("UniversalEmbedder", {"batchsize": 8}, "batchsize: Extra inputs are not permitted"),
        ("UniversalEmbedder", {"dimension": 768}, "384-dimensional vectors, not 768"),
        ("UniversalEmbedder", {"model": "bge-small-en"}, "bundled 'all-MiniLM-L6-v2'"),
        ("UniversalEmbedder", {"batch_size": 0}, "batch_size: Input should be greater than 0"),
        ("UniversalEmbedder", {"max_length": 1024}, "at most 512 tokens"),
        ("OllamaEmbedder", {}, "model: Field required"),
        ("OpenAIEmbedder", {"model": "m", "base_url": "ftp://x"}, "not an http"),
        ("OpenAIEmbedder", {"model": "m", "apikey": "k"}, "apikey: Extra inputs"),
    ],
)
def test_bad_strategies_are_config_invalid(
    type_: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigInvalid, match=message) as caught:
        create_embedder(strategy(type_, **config))
    assert caught.value.detail.startswith("embedding strategy 'emb': ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:9999", "http://0.0.0.0:9999"),
        ("127.0.0.1:11434/v1", "http://127.0.0.1:11434"),
        ("http://ollama.lan/v1/", "http://ollama.lan"),
        ("https://ollama.example.com:8443", "https://ollama.example.com:8443"),
    ],
)
def test_ollama_base_url_forms(value: str, expected: str) -> None:
    assert ollama_url(value) == expected


def test_ollama_base_url_defaults_to_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert ollama_url(None) == "http://localhost:11434"
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5")
    assert ollama_url(None) == "http://10.0.0.5:11434"


# --- HTTP embedders against a real server -----------------------------------------------------

Reply = Callable[[str, dict[str, Any]], "tuple[int, bytes] | str"]
"""(path, request JSON) -> (status, body), or "stall" / "drop" to misbehave."""


@dataclass
class Service:
    url: str
    reply: Reply
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    service: Service

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.service.requests.append((self.path, dict(self.headers), body))
        answer = self.service.reply(self.path, body)
        if answer == "stall":
            self.service.release.wait(10)  # until the test is over; the client has given up
            return
        if answer == "drop":
            return  # close the connection without a response, as a reset keep-alive would
        assert isinstance(answer, tuple)
        status, payload = answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def vector(text: str) -> list[float]:
    return [float(len(text)), float(sum(map(ord, text)) % 97), 1.0, 0.0]


def wire(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """Ollama's /api/embed and OpenAI's /v1/embeddings, the latter answered out of order."""
    vectors = [vector(text) for text in body["input"]]
    if path == "/api/embed":
        return 200, json.dumps({"model": body["model"], "embeddings": vectors}).encode()
    if path == "/v1/embeddings":
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        answer = {"object": "list", "model": body["model"], "data": data[::-1]}
        return 200, json.dumps(answer).encode()
    return 404, b'{"error": "no such route"}'


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], Service]]:
    servers: list[tuple[ThreadingHTTPServer, Service]] = []

    def start(reply: Reply) -> Service:
        handler: type[_Handler] = type("Handler", (_Handler,), {})  # one service per server
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        service = Service(url=f"http://127.0.0.1:{server.server_port}", reply=reply)
        handler.service = service
        # A short poll keeps shutdown() quick.
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append((server, service))
        return service

    yield start
    for server, service in servers:
        service.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def closing() -> Iterator[Callable[[HttpEmbedder], HttpEmbedder]]:
    opened: list[HttpEmbedder] = []

    def keep(embedder: HttpEmbedder) -> HttpEmbedder:
        opened.append(embedder)
        return embedder

    yield keep
    for embedder in opened:
        embedder.close()


def make(kind: str, url: str, **config: Any) -> HttpEmbedder:
    if kind == "ollama":
        return OllamaEmbedder({"base_url": url, "model": "nomic-embed-text", **config})
    return OpenAIEmbedder({"base_url": f"{url}/v1", "model": "text-embedding-3-small", **config})


def test_ollama_batches_and_learns_the_dimension(
    serve: Callable[[Reply], Service], closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    service = serve(wire)
    embedder = closing(make("ollama", f"{service.url}/v1", batch_size=2))
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    assert embedder.embed(texts) == [vector(text) for text in texts]
    assert [(path, body["input"]) for path, _, body in service.requests] == [
        ("/api/embed", ["a", "bb"]),
        ("/api/embed", ["ccc", "dddd"]),
        ("/api/embed", ["eeeee"]),
    ]
    assert {body["model"] for _, _, body in service.requests} == {"nomic-embed-text"}
    assert embedder.dimension == 4
    assert embedder.fingerprint() == "OllamaEmbedder:nomic-embed-text:4"
    assert embedder.embed([]) == []
    assert len(service.requests) == 3


def test_openai_sends_the_key_and_sorts_by_index(
    serve: Callable[[Reply], Service], closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    service = serve(wire)
    embedder = closing(make("openai", service.url, api_key="sk-test"))
    texts = [f"text {'x' * i}" for i in range(70)]
    assert embedder.embed(texts) == [vector(text) for text in texts]
    assert [len(body["input"]) for _, _, body in service.requests] == [64, 6]
    assert {path for path, _, _ in service.requests} == {"/v1/embeddings"}
    assert {headers["Authorization"] for _, headers, _ in service.requests} == {"Bearer sk-test"}
    anonymous = closing(make("openai", service.url))
    anonymous.embed(["x"])
    assert "Authorization" not in service.requests[-1][1]


def test_check_sends_one_tiny_request(
    serve: Callable[[Reply], Service], closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    service = serve(wire)
    embedder = closing(make("ollama", service.url))
    assert embedder.dimension == 4  # unknown until asked: learned from one probe
    assert embedder.dimension == 4
    embedder.check()
    assert [body["input"] for _, _, body in service.requests] == [["ping"], ["ping"]]


def garbage(body: bytes, status: int = 200) -> Reply:
    return lambda path, request: (status, body)


@pytest.mark.parametrize("kind", ["ollama", "openai"])
@pytest.mark.parametrize(
    ("reply", "config", "message"),
    [
        (
            garbage(b'{"error": "model crashed"}', 500),
            {},
            r'HTTP 500: \{"error": "model crashed"\}',
        ),
        (garbage(b"<html>proxy error"), {}, "malformed JSON: '<html>proxy error'"),
        (garbage(b'{"unexpected": []}'), {}, "unexpected response"),
        (lambda path, request: "stall", {"timeout": 0.3}, r"no answer within 0\.3s"),
        (lambda path, request: "drop", {}, "connection lost"),
        (wire, {"dimension": 8}, "returned 4-dimensional vectors, expected 8"),
    ],
)
def test_service_failures_are_unavailable(
    kind: str,
    reply: Reply,
    config: dict[str, Any],
    message: str,
    serve: Callable[[Reply], Service],
    closing: Callable[[HttpEmbedder], HttpEmbedder],
) -> None:
    service = serve(reply)
    embedder = closing(make(kind, service.url, **config))
    with pytest.raises(EmbedderUnavailable, match=message) as caught:
        embedder.embed(["one", "two"])
    assert embedder.base_url in caught.value.detail
    assert f"model {embedder.model!r}" in caught.value.detail
    assert type(embedder).__name__ in caught.value.detail
    assert len(service.requests) == (2 if message == "connection lost" else 1)  # fail fast


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_a_closed_port_is_unavailable(
    kind: str, closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = closing(make(kind, f"http://127.0.0.1:{port}"))
    with pytest.raises(EmbedderUnavailable, match=f"127.0.0.1:{port}.*cannot connect"):
        embedder.check()


def test_a_wrong_count_is_unavailable(
    serve: Callable[[Reply], Service], closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    service = serve(lambda path, request: wire(path, {**request, "input": request["input"][:1]}))
    embedder = closing(make("ollama", service.url))
    with pytest.raises(EmbedderUnavailable, match="returned 1 embeddings for 2 texts"):
        embedder.embed(["one", "two"])


def test_one_dropped_connection_is_retried_once(
    serve: Callable[[Reply], Service], closing: Callable[[HttpEmbedder], HttpEmbedder]
) -> None:
    def flaky(path: str, request: dict[str, Any]) -> tuple[int, bytes] | str:
        return "drop" if len(service.requests) == 1 else wire(path, request)

    service = serve(flaky)
    assert closing(make("openai", service.url)).embed(["x"]) == [vector("x")]
    assert len(service.requests) == 2
