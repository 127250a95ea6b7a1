"""A tiny ONNX cross-encoder laid out as a Hugging Face cache, and a rerank service on loopback."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

MODEL_NAME = "tiny/reranker"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
STOPWORDS = ("a", "an", "the", "is", "are", "of", "in", "on", "what", "how", "do", "does", "to")
CONTENT = (
    *("llama", "alpaca", "wool", "fleece", "farm", "barn", "tractor", "engine", "invoice", "tax"),
    *("ledger", "river", "mountain", "glacier", "harbour", "violin", "pasta", "recipe", "cheese"),
    *("weather", "rain", "sun"),
)
VOCABULARY = (*SPECIAL, *STOPWORDS, *CONTENT)
"""Every word the tokenizer knows (lowercased); any other word is [UNK]."""

Output = Literal["column", "pair", "flat"]


def _tokenizer() -> Tokenizer:
    vocab = {word: i for i, word in enumerate(VOCABULARY)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def _graph(*, token_types: bool, output: Output) -> onnx.ModelProto:
    """logit = 2 * (content words the query and the text share) - 1, per pair."""
    weights = np.diag([1.0 if word in CONTENT else 0.0 for word in VOCABULARY]).astype(np.float32)
    sep = VOCABULARY.index("[SEP]")
    ints = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", *(["token_type_ids"] if token_types else []))
    ]
    shapes: dict[Output, list[str | int]] = {
        "column": ["batch", 1],
        "pair": ["batch", 2],
        "flat": ["batch"],
    }
    constants = [
        numpy_helper.from_array(weights, "bag"),  # one-hot rows, zero for stopwords and specials
        numpy_helper.from_array(np.ones((len(VOCABULARY), 1), np.float32), "ones"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(3.0, np.float32), "three"),
        numpy_helper.from_array(np.array(sep, np.int64), "sep"),
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
        numpy_helper.from_array(np.array([-1, *([1] if output == "column" else [])]), "shape"),
        numpy_helper.from_array(np.array([-1, 1]), "column_shape"),
    ]
    node = helper.make_node
    if token_types:
        segment = [node("Cast", ["token_type_ids"], ["in_text"], to=TensorProto.FLOAT)]
    else:  # XLM-R style: no segment ids; the text is whatever follows the first [SEP]
        segment = [
            node("Equal", ["input_ids", "sep"], ["is_sep_bool"]),
            node("Cast", ["is_sep_bool"], ["is_sep"], to=TensorProto.FLOAT),
            node("CumSum", ["is_sep", "axis"], ["seps_before"], exclusive=1),
            node("Min", ["seps_before", "one"], ["in_text"]),
        ]
    nodes = [
        *segment,
        node("Gather", ["bag", "input_ids"], ["tokens"]),  # [batch, seq, vocab]
        node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        node("Mul", ["mask", "in_text"], ["text_mask"]),
        node("Sub", ["mask", "text_mask"], ["query_mask"]),
        node("Unsqueeze", ["query_mask", "axis"], ["query_row"]),  # [batch, 1, seq]
        node("Unsqueeze", ["text_mask", "axis"], ["text_row"]),
        node("MatMul", ["query_row", "tokens"], ["query_bag"]),  # [batch, 1, vocab] word counts
        node("MatMul", ["text_row", "tokens"], ["text_bag"]),
        node("Min", ["query_bag", "text_bag"], ["common"]),
        node("MatMul", ["common", "ones"], ["shared"]),  # [batch, 1, 1]
        node("Mul", ["shared", "two"], ["doubled"]),
        node("Sub", ["doubled", "one"], ["logit"]),
    ]
    if output == "pair":
        # Softmax over (irrelevant, relevant) must give sigmoid(logit), as the column output does.
        nodes += [
            node("Reshape", ["logit", "column_shape"], ["logit_column"]),
            node("Add", ["logit_column", "three"], ["relevant"]),  # (3, logit + 3)
            node("Sub", ["relevant", "logit_column"], ["irrelevant"]),
            node("Concat", ["irrelevant", "relevant"], ["logits"], axis=1),
        ]
    else:
        nodes.append(node("Reshape", ["logit", "shape"], ["logits"]))
    used = {name for step in nodes for name in step.input}
    graph = helper.make_graph(
        nodes,
        "tiny-reranker",
        ints,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shapes[output])],
        [tensor for tensor in constants if tensor.name in used],  # onnxruntime warns of the rest
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime this project supports
    onnx.checker.check_model(model)
    return model


def build_tiny_reranker(
    cache_dir: Path,
    *,
    model_name: str = MODEL_NAME,
    model_file: str | None = "onnx/model.onnx",
    tokenizer: bool = True,
    token_types: bool = True,
    output: Output = "column",
) -> tuple[Path, str]:
    """Write a cross-encoder into a Hugging Face cache under `cache_dir`; return (cache_dir, name).

    Relevance is the number of distinct content words a text shares with the query:
    score = sigmoid(2 * shared - 1), so 0 shared -> 0.27, 1 -> 0.73, 2 -> 0.95, 3 -> 0.99.
    Content words: llama alpaca wool fleece farm barn tractor engine invoice tax ledger river
    mountain glacier harbour violin pasta recipe cheese weather rain sun (case-insensitive).
    Stopwords (a, the, is, of, what, how, ...) and unknown words never count. For the query
    "llama wool", "Llama wool is warm" > "a llama farm" > "the tractor engine".

    `model_file=None` or `tokenizer=False` leave those files out; `token_types=False` makes a
    graph without a token_type_ids input (as XLM-R exports are); `output` picks the logits'
    shape: [batch, 1], [batch, 2] (irrelevant, relevant) or [batch].
    """
    repo = cache_dir / f"models--{model_name.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    if model_file is not None:
        (snapshot / model_file).parent.mkdir(parents=True, exist_ok=True)
        graph = _graph(token_types=token_types, output=output)
        onnx.save(graph, str(snapshot / model_file))
    if tokenizer:
        _tokenizer().save(str(snapshot / "tokenizer.json"))
    return cache_dir, model_name


# --- a rerank service on loopback -------------------------------------------------------------

Reply = Callable[[str, dict[str, Any]], "tuple[int, bytes] | str"]
"""(path, request JSON) -> (status, body), or "stall" to never answer."""


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
        assert isinstance(answer, tuple)
        status, payload = answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def overlap(query: str, text: str) -> int:
    """The tiny model's notion of relevance, for fake services that should agree with it."""
    words = {word for word in re.findall(r"\w+", query.lower()) if word in CONTENT}
    return len(words & set(re.findall(r"\w+", text.lower())))


def rerank_wire(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """Cohere's shape for `documents`, TEI's for `texts`; both sorted by score, best first."""
    texts = body.get("documents", body.get("texts", []))
    scores = [overlap(body["query"], text) / 10 for text in texts]
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    if "documents" in body:
        results = [{"index": i, "relevance_score": scores[i]} for i in order]
        return 200, json.dumps({"id": "r-1", "results": results, "meta": {}}).encode()
    return 200, json.dumps([{"index": i, "score": scores[i]} for i in order]).encode()


@contextmanager
def rerank_service(reply: Reply = rerank_wire) -> Iterator[Service]:
    """A ThreadingHTTPServer on a free loopback port that answers every POST with `reply`."""
    handler: type[_Handler] = type("Handler", (_Handler,), {})  # one service per server
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    service = Service(url=f"http://127.0.0.1:{server.server_port}", reply=reply)
    handler.service = service
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
