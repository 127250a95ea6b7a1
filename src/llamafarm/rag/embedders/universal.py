"""The offline embedder: a sentence-transformers model run in-process with onnxruntime.

The model is the bundled MiniLM, a folder with `model.onnx` and `tokenizer.json`, or a Hugging
Face repo id found in the local Hugging Face cache (never downloaded): one that is not there is
a 503 naming it when the model is first needed, not a config error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, PositiveInt
from tokenizers import Encoding, Tokenizer

from llamafarm import bundled
from llamafarm.config.models import NonEmpty, StrictModel
from llamafarm.errors import ConfigInvalid, EmbedderUnavailable
from llamafarm.names import hf_model_id
from llamafarm.onnx import Loaded, onnx_session, run, run_options
from llamafarm.rag.embedders.base import parse_config
from llamafarm.rag.embedders.hf_cache import cached_onnx
from llamafarm.shared import Shared
from llamafarm.system.cpus import default_threads

BUNDLED = bundled.EMBEDDER
BUNDLED_ALIASES = bundled.EMBEDDER_ALIASES
BUNDLED_DIMENSION = 384
BUNDLED_MAX_POSITIONS = 512
ATTENTION_BUDGET = 2 * 256 * 256
"""Most texts x tokens x tokens one inference may take (its batch times its longest text's
length, squared): attention keeps a width x width matrix per text and head, and onnxruntime's
arena holds a run's every intermediate until it ends (and the largest run's until the call's
last run ends: it is shrunk only then). Embedding the chunks of bench/ingest.py
(~230 tokens) from 16 threads peaked at 818 MiB PSS in runs of 32 and 524 MiB in runs of 8;
with large blocks mapped alone (`llamafarm.system.memory`) at 397 MiB in runs of 8 and
232-236 MiB in runs of 2, at the same rate within the noise (7-8 texts/s on 2 busy cores).
Short texts (queries) still go `batch_size` at a time. A call on a share of the CPUs takes that
share of the budget: the worker's lanes run calls at once, which together then hold what one
call on every CPU would (2 lanes of 2 texts each peaked at 591-603 MiB PSS in bench/ingest.py,
of 1 text each at 516-527)."""
WHAT = "UniversalEmbedder"

Floats = npt.NDArray[np.float32]


class UniversalConfig(StrictModel):
    model: NonEmpty = Field(
        default=BUNDLED,
        description=f"{BUNDLED} (bundled), a Hugging Face model id ORG/NAME (its ONNX export "
        "in the local cache) or a folder with model.onnx and tokenizer.json.",
    )
    dimension: PositiveInt | None = Field(
        default=None, description="Default: what the model makes (384 for the bundled one)."
    )
    batch_size: PositiveInt = Field(
        default=32,
        le=1024,
        description="Texts per inference at most; long ones go fewer at a time, within "
        "ATTENTION_BUDGET (2 texts of 256 tokens on every CPU; a call on fewer threads, its "
        "share).",
    )
    max_length: int = Field(
        default=256, ge=8, le=8192, description="Tokens kept per text; the rest is cut."
    )
    threads: PositiveInt | None = Field(
        default=None,
        le=256,
        description="Threads a call runs on. Default: the CPUs available (in the ingestion "
        "worker, which runs up to 2 calls at once, their share).",
    )
    normalize: bool = Field(default=True, description="L2-normalise each vector.")
    cache_dir: str | None = Field(
        default=None, description="The Hugging Face cache to look in (default: HF_HUB_CACHE)."
    )


def _tokenizer(shared: Shared, path: Path, max_length: int) -> Tokenizer:
    """One per file and length; configured once here and only read after."""
    return shared.load(
        ("embedder-tokenizer", path, max_length), lambda: _load_tokenizer(path, max_length)
    )


def _load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    # The shipped file pads and truncates to a fixed 128; we truncate at max_length and
    # pad each batch only to its longest text.
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return tokenizer


bundled_files = bundled.embedder_files


def _model_files(model: str, cache_dir: str | None) -> tuple[Path, Path] | None:
    """The model's files; None for a repo id missing from the Hugging Face cache. A repo id
    is looked up in the cache only, never as a folder relative to the working directory."""
    if model in BUNDLED_ALIASES:
        return bundled_files()
    repo = hf_model_id(model)
    if repo is not None and repo.quant is None:
        return cached_onnx(model, cache_dir)
    folder = Path(model).expanduser().resolve()
    files = folder / "model.onnx", folder / "tokenizer.json"
    if repo is None and all(file.is_file() for file in files):
        return files
    raise ConfigInvalid(
        f"{WHAT} config: model: {model!r} is neither the bundled {BUNDLED!r}, "
        "a Hugging Face model id ORG/NAME (no :QUANT) nor a folder containing model.onnx and "
        "tokenizer.json"
    )


class UniversalEmbedder:
    """Mean-pooled, L2-normalised sentence vectors; needs no network and no GPU."""

    def __init__(self, config: dict[str, Any], shared: Shared | None = None) -> None:
        """`shared`: the process's loaded models (ModelCache's); None loads this one's own."""
        settings = parse_config(UniversalConfig, config, what=WHAT)
        self._bundled = settings.model in BUNDLED_ALIASES
        files = _model_files(settings.model, settings.cache_dir)
        self._missing = settings.model if files is None else None
        self._model_path, self._tokenizer_path = files or (Path(), Path())
        if self._bundled and settings.dimension not in (None, BUNDLED_DIMENSION):
            raise ConfigInvalid(
                f"{WHAT} config: dimension: {BUNDLED} makes {BUNDLED_DIMENSION}-dimensional "
                f"vectors, not {settings.dimension}"
            )
        if self._bundled and settings.max_length > BUNDLED_MAX_POSITIONS:
            raise ConfigInvalid(
                f"{WHAT} config: max_length: {BUNDLED} reads at most {BUNDLED_MAX_POSITIONS} "
                f"tokens, not {settings.max_length}"
            )
        if self._bundled:
            self.name = BUNDLED
        elif files is None or hf_model_id(settings.model) is not None:
            self.name = settings.model
        else:
            self.name = str(self._model_path.parent)
        self._dimension = BUNDLED_DIMENSION if self._bundled else settings.dimension
        self.normalize = settings.normalize
        self.batch_size = settings.batch_size
        self.max_length = settings.max_length
        self._shared = shared or Shared()
        cpus = default_threads()
        self.threads = settings.threads or self._shared.threads or cpus
        self.attention_budget = ATTENTION_BUDGET * min(self.threads, cpus) // cpus
        self._loaded: Loaded | None = None

    @property
    def dimension(self) -> int:
        """As configured, else what the model makes (learned by loading it)."""
        if self._dimension is None:
            self._load()
        if self._dimension is None:  # a symbolic output shape: one text tells
            self.embed(["dimension"])
        assert self._dimension is not None
        return self._dimension

    def fingerprint(self) -> str:
        # The bundled weights are an int8 export; a different export would change the vectors.
        model = f"{BUNDLED}-int8" if self._bundled else self.name
        size = self._dimension or "auto"
        normal = "" if self.normalize else ":raw"
        return f"{WHAT}:{model}:{size}:{self.max_length}{normal}"

    def check(self) -> None:
        vectors = self.embed(["ping"])
        if len(vectors) != 1 or len(vectors[0]) != self.dimension:
            raise EmbedderUnavailable(f"{WHAT} ({self.name}): the model answered a wrong shape")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loaded = self._load()
        encodings = loaded.tokenizer.encode_batch(list(texts))
        # Batches of similar length waste less work on padding; results go back by index.
        lengths = [len(encoding.ids) for encoding in encodings]
        order = np.argsort(lengths, kind="stable")
        vectors: Floats | None = None
        parts = list(self._batches([lengths[i] for i in order]))
        for number, part in enumerate(parts, 1):
            rows = order[part]
            batch = self._run(loaded, [encodings[i] for i in rows], more=number < len(parts))
            self._dimension = self._dimension or int(batch.shape[1])
            if vectors is None:
                vectors = np.empty((len(texts), batch.shape[1]), dtype=np.float32)
            vectors[rows] = batch
        assert vectors is not None
        result: list[list[float]] = vectors.tolist()
        return result

    def _batches(self, lengths: list[int]) -> Iterator[slice]:
        """Texts of ascending `lengths` (in tokens) cut into runs of at most `batch_size`
        texts and `attention_budget`; a run is padded to its last, longest text."""
        start = 0
        while start < len(lengths):
            end = start + 1
            while (
                end < len(lengths)
                and end - start < self.batch_size
                and (end - start + 1) * lengths[end] ** 2 <= self.attention_budget
            ):
                end += 1
            yield slice(start, end)
            start = end

    def _load(self) -> Loaded:
        if self._missing is not None:
            raise EmbedderUnavailable(
                f"{WHAT}: model {self._missing!r} is not available offline: it is neither "
                f"the bundled {BUNDLED!r}, nor a folder, nor an ONNX export (model.onnx and "
                "tokenizer.json) in the local Hugging Face cache; nothing is downloaded"
            )
        if self._loaded is None:
            try:
                session = onnx_session(self._shared, self._model_path, self.threads)
                tokenizer = _tokenizer(self._shared, self._tokenizer_path, self.max_length)
            except Exception as exc:  # onnxruntime and tokenizers raise their own bare types
                raise EmbedderUnavailable(
                    f"{WHAT}: cannot load model {self.name!r} from {self._model_path}: {exc}"
                ) from exc
            output = session.get_outputs()[0]
            size = output.shape[-1] if output.shape else None
            if self._dimension is None:
                self._dimension = size if isinstance(size, int) else None
            if isinstance(size, int) and size != self._dimension:
                raise ConfigInvalid(
                    f"{WHAT} config: dimension: {self.name} makes {size}-dimensional vectors, "
                    f"not {self._dimension}"
                )
            inputs = frozenset(node.name for node in session.get_inputs())
            # The arena is shrunk after a call's last run, not after each: its memory handed
            # back and faulted in again for every run cost the worker (which maps large
            # blocks alone, llamafarm.system.memory) 8-9 % more CPU embedding 120 bench chunks
            # in calls of 60 (9.05 s against 8.28-8.36 s, 362k against 170k page faults), for
            # the same peak (355-358 MiB RSS): a call's runs are of ascending length, so the
            # arena's largest is its last.
            self._loaded = Loaded(
                session, tokenizer, output.name, inputs, run_options(), run_options(shrink=False)
            )
        return self._loaded

    def _fail(self, cause: str) -> EmbedderUnavailable:
        return EmbedderUnavailable(f"{WHAT} ({self.name}): {cause}")

    def _run(self, loaded: Loaded, batch: list[Encoding], *, more: bool = False) -> Floats:
        width = max(len(encoding.ids) for encoding in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, encoding in enumerate(batch):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = run(loaded, feeds, fail=self._fail, more=more)
        weights = mask.astype(np.float32)
        summed = np.einsum("bsd,bs->bd", hidden, weights)
        means = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        if not self.normalize:
            raw: Floats = means.astype(np.float32)
            return raw
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        normalised: Floats = (means / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised
