"""The ONNX cross-encoder against a tiny real model, the remote reranker against real servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants, snapshot_download

from llamafarm.errors import ConfigInvalid, RerankerUnavailable
from llamafarm.rag.rerankers import (
    RERANKERS,
    CrossEncoderReranker,
    RemoteReranker,
    create_reranker,
)
from tests.rag.rerank_fixtures import (
    REVISION,
    Output,
    Reply,
    Service,
    build_tiny_reranker,
    rerank_service,
    rerank_wire,
)

QUERY = "What is llama wool?"
TEXTS = ["the tractor engine", "Llama wool is warm", "a llama farm", "wool", "unrelated words"]
"""Sharing 0, 2, 1, 1 and 0 content words with QUERY."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return build_tiny_reranker(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def reranker(tiny: tuple[Path, str]) -> CrossEncoderReranker:
    cache, name = tiny
    built = create_reranker({"model_name": name}, cache_dir=cache)
    assert isinstance(built, CrossEncoderReranker)
    return built


# --- the local cross-encoder ------------------------------------------------------------------


def test_the_fixture_is_a_hugging_face_cache(tiny: tuple[Path, str]) -> None:
    cache, name = tiny
    snapshot = Path(str(snapshot_download(name, local_files_only=True, cache_dir=cache)))
    assert snapshot.name == REVISION
    assert (snapshot / "onnx" / "model.onnx").is_file()
    assert (snapshot / "tokenizer.json").is_file()


def test_relevant_texts_score_higher(reranker: CrossEncoderReranker) -> None:
    scores = reranker.score(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(0.0 <= score <= 1.0 for score in scores)
    ranking = sorted(range(len(TEXTS)), key=lambda i: -scores[i])
    assert ranking[0] == 1  # shares llama and wool
    assert scores[1] > scores[2] > scores[0]
    assert scores[2] == pytest.approx(scores[3]) and scores[0] == pytest.approx(scores[4])
    assert scores[0] < 0.5 < scores[2]
    assert reranker.name == "tiny/reranker"
    reranker.check()


def test_scores_depend_on_the_query(reranker: CrossEncoderReranker) -> None:
    texts = ["llama farm", "tax invoice"]
    llama, tax = reranker.score("llama", texts), reranker.score("tax", texts)
    assert llama[0] > llama[1] and tax[1] > tax[0]


def test_padding_and_batches_leave_each_score_as_it_is_alone(tiny: tuple[Path, str]) -> None:
    cache, name = tiny
    texts = [f"{'llama ' * (i % 3)}{'rain sun ' * i}wool" for i in range(70)]
    batched = CrossEncoderReranker(name, cache_dir=cache, batch_size=32).score(QUERY, texts)
    alone = [CrossEncoderReranker(name, cache_dir=cache).score(QUERY, [t])[0] for t in texts]
    assert batched == pytest.approx(alone, abs=1e-6)
    assert len({round(score, 4) for score in batched}) == 2  # wool, or llama and wool


def test_long_texts_are_truncated(tiny: tuple[Path, str]) -> None:
    cache, name = tiny
    text = "rain " * 20 + "llama wool"
    short = CrossEncoderReranker(name, cache_dir=cache, max_length=16)
    full = CrossEncoderReranker(name, cache_dir=cache)
    # The pair is cut from the longer side, the text: its matching tail is gone at 16 tokens.
    assert short.score(QUERY, [text])[0] < 0.5 < full.score(QUERY, [text])[0]


@pytest.mark.parametrize("token_types", [True, False])
@pytest.mark.parametrize("output", ["column", "pair", "flat"])
def test_graph_inputs_and_output_shapes(
    token_types: bool,
    output: Output,
    tmp_path: Path,
    reranker: CrossEncoderReranker,
) -> None:
    cache, name = build_tiny_reranker(tmp_path, token_types=token_types, output=output)
    variant = CrossEncoderReranker(name, cache_dir=cache)
    # Without token_type_ids in the graph, feeding it would fail; [batch, 2] is a softmax pair.
    assert variant.score(QUERY, TEXTS) == pytest.approx(reranker.score(QUERY, TEXTS), abs=1e-6)


def test_a_model_onnx_at_the_snapshot_root_is_found(
    tmp_path: Path, reranker: CrossEncoderReranker
) -> None:
    cache, name = build_tiny_reranker(tmp_path, model_file="model.onnx")
    root = CrossEncoderReranker(name, cache_dir=cache)
    assert root.score(QUERY, TEXTS) == pytest.approx(reranker.score(QUERY, TEXTS))


def test_concurrent_first_use_loads_once_and_agrees(tiny: tuple[Path, str]) -> None:
    cache, name = tiny
    fresh = CrossEncoderReranker(name, cache_dir=cache)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: fresh.score(QUERY, TEXTS), range(16)))
    assert all(result == results[0] for result in results)


def test_empty_input_needs_no_model(tmp_path: Path) -> None:
    assert CrossEncoderReranker("nobody/nothing", cache_dir=tmp_path).score(QUERY, []) == []


def test_a_missing_model_is_unavailable_on_first_use_only(tmp_path: Path) -> None:
    reranker = create_reranker({"model_name": "tiny/reranker"}, cache_dir=tmp_path)  # no error
    with pytest.raises(RerankerUnavailable) as caught:
        reranker.score(QUERY, TEXTS)
    detail = caught.value.detail
    assert "'tiny/reranker'" in detail and str(tmp_path) in detail
    assert "onnx/model.onnx + tokenizer.json" in detail and "base_url" in detail
    assert caught.value.status == 503
    # Nothing is remembered: a model put in the cache later is used without a restart.
    build_tiny_reranker(tmp_path)
    assert reranker.score(QUERY, TEXTS)[1] > 0.9


def test_the_default_cache_is_huggingface_hubs() -> None:
    with pytest.raises(RerankerUnavailable) as caught:
        create_reranker({"model_name": "llamafarm-tests/no-such-reranker"}).check()
    assert str(constants.HF_HUB_CACHE) in caught.value.detail


@pytest.mark.parametrize(
    ("files", "missing"),
    [
        ({"tokenizer": False}, "lacks tokenizer.json;"),
        ({"model_file": None}, "lacks onnx/model.onnx or model.onnx;"),
        ({"model_file": "onnx/model_quantized.onnx"}, "lacks onnx/model.onnx or model.onnx;"),
        ({"model_file": None, "tokenizer": False}, "model.onnx and tokenizer.json;"),
    ],
)
def test_missing_files_are_named(files: dict[str, Any], missing: str, tmp_path: Path) -> None:
    cache, name = build_tiny_reranker(tmp_path, **files)
    with pytest.raises(RerankerUnavailable, match=missing) as caught:
        CrossEncoderReranker(name, cache_dir=cache).check()
    assert f"{REVISION}" in caught.value.detail and "'tiny/reranker'" in caught.value.detail


def test_a_broken_model_file_is_unavailable(tmp_path: Path) -> None:
    cache, name = build_tiny_reranker(tmp_path)
    model = next(tmp_path.rglob("model.onnx"))
    model.write_bytes(b"not an onnx file")
    with pytest.raises(RerankerUnavailable, match=r"cannot load .*model\.onnx"):
        CrossEncoderReranker(name, cache_dir=cache).check()


# --- config and factory -----------------------------------------------------------------------


def test_the_strategy_keys_are_accepted(tiny: tuple[Path, str]) -> None:
    cache, name = tiny
    config = {"model_name": name, "initial_k": 50, "final_k": 5, "strategy": "basic_search"}
    local = create_reranker(config, cache_dir=cache)
    assert isinstance(local, CrossEncoderReranker) and local.name == name
    remote = create_reranker({**config, "base_url": "http://127.0.0.1:9/v1/", "api_key": "k"})
    assert isinstance(remote, RemoteReranker)
    assert remote.url == "http://127.0.0.1:9/v1/rerank" and remote.name == name
    remote.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_name": "m/x", "top_k": 5}, "top_k: Extra inputs are not permitted"),
        ({"model_name": ""}, "model_name: String should have at least 1 character"),
        ({}, "model_name: Field required"),
        ({"model_name": "m/x", "initial_k": 0}, "initial_k: Input should be greater than"),
        ({"model_name": "m/x", "initial_k": 1001}, "initial_k: Input should be less than"),
        ({"model_name": "m/x", "initial_k": 5, "final_k": 10}, r"final_k \(10\) exceeds"),
        ({"model_name": "m/x", "protocol": "openai"}, "protocol: Input should be 'cohere'"),
        ({"model_name": "/models/bge reranker"}, "not a Hugging Face repo id"),
        ({"model_name": "m", "base_url": "ftp://x"}, "not an http"),
    ],
)
def test_bad_configs_are_config_invalid(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message) as caught:
        create_reranker(config)
    assert "config: " in caught.value.detail


def test_rerankers_are_registered_by_type_and_the_type_may_be_named(
    tiny: tuple[Path, str],
) -> None:
    assert list(RERANKERS) == ["CrossEncoderReranker", "RemoteReranker"]
    cache, name = tiny
    local = create_reranker({"type": "CrossEncoderReranker", "model_name": name}, cache_dir=cache)
    assert isinstance(local, CrossEncoderReranker)
    remote = create_reranker(
        {"type": "RemoteReranker", "model_name": "rerank v3.5", "base_url": "http://h/v1"}
    )
    assert isinstance(remote, RemoteReranker)
    remote.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"type": "ColBERT", "model_name": "m/x"},
            "type: Value error, Unknown reranker type 'ColBERT' "
            "(known: CrossEncoderReranker, RemoteReranker)",
        ),
        ({"type": "RemoteReranker", "model_name": "m/x"}, "a RemoteReranker needs base_url"),
        (
            {"type": "CrossEncoderReranker", "model_name": "m/x", "base_url": "http://h/v1"},
            "base_url is for a RemoteReranker",
        ),
    ],
)
def test_a_type_that_does_not_fit_is_config_invalid(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        create_reranker(config)
    assert message in caught.value.detail


def test_a_service_model_name_need_not_be_a_repo_id() -> None:
    remote = create_reranker({"model_name": "rerank v3.5", "base_url": "http://h/v1"})
    assert remote.name == "rerank v3.5"
    assert isinstance(remote, RemoteReranker)
    remote.close()


# --- the remote reranker against real servers -------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], Service]]:
    with ExitStack() as stack:
        yield lambda reply: stack.enter_context(rerank_service(reply))


@pytest.fixture
def closing() -> Iterator[Callable[[RemoteReranker], RemoteReranker]]:
    with ExitStack() as stack:

        def keep(reranker: RemoteReranker) -> RemoteReranker:
            stack.callback(reranker.close)
            return reranker

        yield keep


def test_cohere_wire_format(
    serve: Callable[[Reply], Service], closing: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    service = serve(rerank_wire)
    reranker = closing(RemoteReranker(f"{service.url}/v1", "rerank-v3.5", api_key="sk-test"))
    # The service answers best first; the scores must come back in input order.
    assert reranker.score(QUERY, TEXTS) == [0.0, 0.2, 0.1, 0.1, 0.0]
    ((path, headers, body),) = service.requests
    assert path == "/v1/rerank"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": TEXTS,
        "top_n": 5,
        "return_documents": False,
    }


def test_tei_wire_format_in_batches_of_32(
    serve: Callable[[Reply], Service], closing: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    service = serve(rerank_wire)
    reranker = closing(RemoteReranker(service.url, "BAAI/bge-reranker-base", protocol="tei"))
    texts = [("llama " if i % 3 == 0 else "rain ") + str(i) for i in range(70)]
    assert reranker.score("llama", texts) == [0.1 if i % 3 == 0 else 0.0 for i in range(70)]
    assert [len(body["texts"]) for _, _, body in service.requests] == [32, 32, 6]
    path, headers, body = service.requests[0]
    assert path == "/rerank" and "Authorization" not in headers
    assert body == {"query": "llama", "texts": texts[:32], "raw_scores": False, "truncate": True}


def test_raw_logits_are_squashed_in_order(
    serve: Callable[[Reply], Service], closing: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    logits = [{"index": 2, "relevance_score": 7.5}, {"index": 0, "relevance_score": -1.0}]
    logits.append({"index": 1, "relevance_score": -9.0})
    service = serve(lambda path, body: (200, json.dumps({"results": logits}).encode()))
    reranker = closing(RemoteReranker(f"{service.url}/v1", "llama.cpp-reranker"))
    scores = reranker.score("q", ["a", "b", "c"])
    assert all(0.0 < score < 1.0 for score in scores)
    assert scores[2] > 0.99 and scores[1] < scores[0] < 0.5


def test_check_sends_one_tiny_request(
    serve: Callable[[Reply], Service], closing: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    service = serve(rerank_wire)
    reranker = closing(RemoteReranker(f"{service.url}/v1", "m", timeout=60))
    reranker.check()
    assert reranker.score("q", []) == []
    assert [body["documents"] for _, _, body in service.requests] == [["pong"]]


def answer(body: bytes | object, status: int = 200) -> Reply:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda path, request: (status, payload)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (answer(b'{"detail": "model crashed"}', 500), r'HTTP 500: \{"detail": "model crashed"\}'),
        (answer(b"x" * 1000, 502), r"HTTP 502: x{200}\.\.\.$"),
        (answer(b"<html>proxy error"), "malformed JSON: '<html>proxy error'"),
        (answer({"unexpected": []}), "unexpected response"),
        (answer({"results": [{"index": 0}]}), "unexpected response"),
        (answer([{"index": 0, "score": 0.5}]), "returned 1 results for 2 texts"),
        (answer([{"index": 0, "score": 0.5}] * 2), "returned 2 results for 2 texts"),
        (answer({"results": [{"index": i, "relevance_score": 0.1} for i in (0, 1, 2)]}), "3 res"),
        (answer([{"index": 0, "score": "NaN"}, {"index": 1, "score": 1}]), "non-finite"),
    ],
)
def test_service_failures_are_unavailable(
    reply: Reply,
    message: str,
    serve: Callable[[Reply], Service],
    closing: Callable[[RemoteReranker], RemoteReranker],
) -> None:
    service = serve(reply)
    reranker = closing(RemoteReranker(f"{service.url}/v1", "rerank-v3.5"))
    with pytest.raises(RerankerUnavailable, match=message) as caught:
        reranker.score("q", ["one", "two"])
    assert f"{service.url}/v1/rerank" in caught.value.detail
    assert "model 'rerank-v3.5'" in caught.value.detail
    assert len(service.requests) == 1  # fail fast


def test_a_stalled_service_times_out(
    serve: Callable[[Reply], Service], closing: Callable[[RemoteReranker], RemoteReranker]
) -> None:
    service = serve(lambda path, body: "stall")
    reranker = closing(RemoteReranker(service.url, "m", timeout=0.3, protocol="tei"))
    started = time.monotonic()
    with pytest.raises(RerankerUnavailable, match=r"no answer within 0\.3s"):
        reranker.score("q", ["one"])
    assert time.monotonic() - started < 3


def test_a_closed_port_is_unavailable(closing: Callable[[RemoteReranker], RemoteReranker]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reranker = closing(RemoteReranker(f"http://127.0.0.1:{port}/v1", "m"))
    with pytest.raises(RerankerUnavailable, match="cannot connect") as caught:
        reranker.check()
    assert f"127.0.0.1:{port}/v1/rerank" in caught.value.detail
