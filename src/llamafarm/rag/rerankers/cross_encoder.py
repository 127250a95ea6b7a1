"""A cross-encoder run in-process with onnxruntime, found in the local Hugging Face cache."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from tokenizers import Encoding, Tokenizer

from llamafarm.errors import RerankerUnavailable
from llamafarm.onnx import Loaded, onnx_session, run, run_options
from llamafarm.rag.rerankers.base import sigmoid
from llamafarm.shared import Shared
from llamafarm.system.cpus import default_threads

WHAT = "CrossEncoderReranker"
MODEL_FILES = ("onnx/model.onnx", "model.onnx")
"""Where ONNX exports on the Hub keep the graph, in the order we look."""
TOKENIZER_FILE = "tokenizer.json"
FEEDS = frozenset({"input_ids", "attention_mask", "token_type_ids"})
HOW_TO_GET = (
    "put an ONNX export in the Hugging Face cache (onnx/model.onnx + tokenizer.json), "
    "e.g. `hf download {model} onnx/model.onnx tokenizer.json`, "
    "or set base_url to a /v1/rerank service"
)


def _tokenizer(path: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    shipped = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length)  # longest_first: the long text is cut, not the query
    # Each batch is padded to its longest pair, with the model's own pad token (1 for XLM-R).
    tokenizer.enable_padding(
        pad_id=shipped.get("pad_id", 0),
        pad_type_id=shipped.get("pad_type_id", 0),
        pad_token=shipped.get("pad_token", "[PAD]"),
    )
    return tokenizer


class CrossEncoderReranker:
    """Reads (query, text) pairs together; needs no network, no GPU and no torch.

    Nothing is loaded until the first `score()` or `check()`, so a missing model fails there,
    as RerankerUnavailable, and a model added to the cache later is picked up without a restart.
    """

    def __init__(
        self,
        model_name: str,
        *,
        cache_dir: Path | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        threads: int | None = None,
        shared: Shared | None = None,
    ) -> None:
        """`shared`: the process's loaded models (ModelCache's); None loads this one's own."""
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self._shared = shared or Shared()
        self.threads = threads or self._shared.threads or default_threads()
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_name

    def check(self) -> None:
        self.score("ping", ["pong"])

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        loaded = self._load()
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            pairs = [(query, text) for text in texts[start : start + self.batch_size]]
            scores.extend(self._run(loaded, loaded.tokenizer.encode_batch(pairs)))
        return scores

    def _fail(self, cause: str) -> RerankerUnavailable:
        return RerankerUnavailable(f"{WHAT} (model {self.model_name!r}): {cause}")

    def _snapshot(self) -> tuple[Path, Path]:
        """The model and tokenizer files of the cached snapshot; never touches the network."""
        from huggingface_hub import constants, snapshot_download  # 0.2 s, paid on first use

        folder = self.cache_dir or Path(constants.HF_HUB_CACHE)
        how = HOW_TO_GET.format(model=self.model_name)
        try:
            found = snapshot_download(
                repo_id=self.model_name, local_files_only=True, cache_dir=self.cache_dir
            )
        except (LocalEntryNotFoundError, HFValidationError, OSError) as exc:
            raise self._fail(f"not in the Hugging Face cache at {folder}; {how}") from exc
        assert isinstance(found, str)  # a list only for dry runs
        snapshot = Path(found)
        model = next((snapshot / n for n in MODEL_FILES if (snapshot / n).is_file()), None)
        tokenizer = snapshot / TOKENIZER_FILE
        missing = [" or ".join(MODEL_FILES)] if model is None else []
        missing += [] if tokenizer.is_file() else [TOKENIZER_FILE]
        if model is None or missing:
            raise self._fail(f"{snapshot} lacks {' and '.join(missing)}; {how}")
        return model, tokenizer

    def _load(self) -> Loaded:
        with self._lock:
            if self._loaded is None:
                model, tokenizer_path = self._snapshot()
                try:
                    session = onnx_session(self._shared, model, self.threads)
                    tokenizer = _tokenizer(tokenizer_path, self.max_length)
                except Exception as exc:  # onnxruntime and tokenizers raise their own bare types
                    raise self._fail(f"cannot load {model}: {exc}") from exc
                inputs = frozenset(node.name for node in session.get_inputs())
                if unknown := inputs - FEEDS:
                    raise self._fail(f"the graph needs inputs we cannot give: {sorted(unknown)}")
                outputs = [node.name for node in session.get_outputs()]
                output = "logits" if "logits" in outputs else outputs[0]
                self._loaded = Loaded(session, tokenizer, output, inputs, run_options())
            return self._loaded

    def _run(self, loaded: Loaded, batch: list[Encoding]) -> list[float]:
        feeds = {
            "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in batch], dtype=np.int64),
        }
        logits = np.asarray(run(loaded, feeds, fail=self._fail), dtype=np.float64)
        if logits.shape in {(len(batch),), (len(batch), 1)}:
            relevance = logits.reshape(-1)
        elif logits.shape == (len(batch), 2):
            # Two classes under softmax: P(relevant) = sigmoid(relevant - irrelevant).
            relevance = logits[:, 1] - logits[:, 0]
        else:
            raise self._fail(f"logits of shape {logits.shape} for {len(batch)} pairs")
        if not np.isfinite(relevance).all():
            raise self._fail("the model produced non-finite logits")
        scores: list[float] = sigmoid(relevance).tolist()
        return scores
