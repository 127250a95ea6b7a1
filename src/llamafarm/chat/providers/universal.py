"""The offline chat provider: a GGUF model run in-process with xllamacpp (llama.cpp).

xllamacpp wraps llama.cpp's server: its `handle_chat_completions` takes an OpenAI-style request,
applies the model's chat template, and answers in OpenAI's shapes (errors as `{"error": ...}`).

Tools are offered only to a model whose chat template renders them (it mentions `tools`):
llama.cpp drops the `tools` of a request whose template has no place for them, so the model
would never see them. The bundled SmolLM2-135M-Instruct's template has none.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from llamafarm import bundled
from llamafarm.chat.providers import wire
from llamafarm.chat.providers.base import (
    Completion,
    Delta,
    FinishReason,
    Generation,
    Measure,
    Usage,
)
from llamafarm.chat.providers.llama_tokens import LlamaTokens
from llamafarm.config.models import LOAD_OPTIONS, ModelConfig
from llamafarm.errors import BadGateway, BadRequest, LfError, ProviderUnavailable
from llamafarm.models.gguf import cached_gguf
from llamafarm.names import hf_model_id
from llamafarm.shared import Shared
from llamafarm.system.cpus import default_threads

BUNDLED = bundled.CHAT
DEFAULT_MAX_TOKENS = 512
"""A generation's `max_tokens` when neither the request nor the model's parameters set one."""
BUNDLED_DEFAULTS: Mapping[str, Any] = {
    "max_tokens": 192,
    "temperature": 0.2,
    "repeat_penalty": 1.3,
    "repeat_last_n": 64,
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
}
"""What the bundled 135M model is asked with unless the model's `model_api_parameters` /
`extra_body` or the request say otherwise: left to itself it repeats one paragraph until
`max_tokens` at llama.cpp's default temperature (0.8). A low temperature, llama.cpp's DRY
sampler (penalises repeating a run of tokens seen before in the context) and `repeat_penalty`
(penalises the last 64 tokens) make it end, and a short `max_tokens` bounds what remains
(bench/answers.py measures it)."""
MAX_CONTEXT = 4096
"""Tokens of context (prompt + answer); less when the model was trained on less."""
WHAT = "UniversalProvider"


bundled_path = bundled.chat_path


def model_path(model: str) -> Path:
    """The GGUF file a config's `model` names: the bundled model's name, a Hugging Face model
    id (`ORG/NAME[:QUANT]`, found in the local cache only), or a path to a file."""
    if model == BUNDLED:
        return bundled_path()
    if hf_model_id(model) is not None:
        return cached_gguf(model)
    if model.endswith(".gguf") or "/" in model or "\\" in model:
        path = Path(model).expanduser().resolve()
    else:
        raise ProviderUnavailable(
            f"{WHAT}: unknown model {model!r}: use the bundled {BUNDLED!r}, a Hugging Face "
            "model id ORG/NAME[:QUANT] or a path to a GGUF file"
        )
    if not path.is_file():
        raise ProviderUnavailable(f"{WHAT}: model file {str(path)!r} does not exist")
    return path


# GGUF metadata value types: the struct format of each scalar, 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


def _read(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _skip_value(file: BinaryIO, kind: int) -> None:
    if kind == 8:
        file.seek(_read(file, "Q"), 1)
    elif kind == 9:
        item, count = _read(file, "I"), _read(file, "Q")
        if item in _SCALARS:
            file.seek(struct.calcsize("<" + _SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _skip_value(file, item)
    elif kind in _SCALARS:
        file.seek(struct.calcsize("<" + _SCALARS[kind]), 1)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def _header_value(path: Path, wanted: Callable[[str, int], bool]) -> Any:
    """The first metadata value of the GGUF header whose key and type `wanted` accepts (a
    scalar or a string), or None."""
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        _version, _tensors, entries = _read(file, "I"), _read(file, "Q"), _read(file, "Q")
        for _ in range(entries):
            key = file.read(_read(file, "Q")).decode("utf-8", "replace")
            kind = _read(file, "I")
            if wanted(key, kind) and kind in _SCALARS:
                return _read(file, _SCALARS[kind])
            if wanted(key, kind) and kind == 8:
                return file.read(_read(file, "Q")).decode("utf-8", "replace")
            _skip_value(file, kind)
    return None


def train_context(path: Path) -> int:
    """The `<arch>.context_length` the model was trained with, read from the GGUF header."""
    value = _header_value(path, lambda key, kind: key.endswith(".context_length"))
    if not isinstance(value, int):
        raise ValueError("no context_length in the GGUF header")
    return value


def chat_template(path: Path) -> str | None:
    """The model's Jinja chat template (`tokenizer.chat_template`), if the header has one."""
    value = _header_value(path, lambda key, kind: key == "tokenizer.chat_template" and kind == 8)
    return value if isinstance(value, str) else None


LoadOptions = tuple[tuple[str, Any], ...]
"""`extra_body`'s load options (n_ctx, n_batch, ...) that were set, sorted: a hashable key."""


def split_options(extra: Mapping[str, object]) -> tuple[LoadOptions, dict[str, Any]]:
    """The load options of a generation's `extra`, and the rest (which goes in the request)."""
    options = tuple(sorted((k, v) for k, v in extra.items() if k in LOAD_OPTIONS and v is not None))
    return options, {k: v for k, v in extra.items() if k not in LOAD_OPTIONS}


def shared_server(shared: Shared, path: Path, options: LoadOptions = ()) -> Any:
    """The process's llama.cpp server of a GGUF file (model weights + KV cache, ~240 MB RSS for
    the bundled model, 0.5 s to load), shared by every project that names the file.

    It has one slot (n_parallel=1), so the whole context serves one generation at a time;
    concurrent requests wait in llama.cpp's own task queue, the path its HTTP server takes for
    concurrent clients, so generations never share state.
    """
    key = server_key(shared, path, options)
    return shared.load(("llama-server", path, options), lambda: _load(path, dict(options), key))


def server_key(shared: Shared, path: Path, options: LoadOptions = ()) -> str:
    """The random API key of the server's loopback HTTP port, which nobody else is told: only
    `measure` calls it (its tokenizer)."""
    return shared.load(("llama-server-key", path, options), lambda: secrets.token_urlsafe(32))


def _load(path: Path, options: Mapping[str, Any], key: str) -> Any:
    import xllamacpp  # 0.1 s import, paid on first use

    try:
        trained = train_context(path)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            f"{WHAT}: {str(path)!r} is not a readable GGUF model: {exc}"
        ) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    # Never more than the model was trained on: a bigger KV cache only costs memory.
    params.n_ctx = min(options.get("n_ctx") or MAX_CONTEXT, trained)
    params.n_parallel = 1
    params.cpuparams.n_threads = options.get("n_threads") or default_threads()
    params.cpuparams_batch.n_threads = options.get("n_threads") or default_threads()
    _apply(xllamacpp, params, options)
    params.verbosity = 1  # errors only; llama.cpp logs every request at the default
    # The library always opens its HTTP server on a free loopback port; only `measure` uses
    # it, so a random key that is never shared shuts it to everyone else.
    params.api_keys = [key]
    params.ui = False
    params.n_threads_http = 1
    try:
        return xllamacpp.Server(params)
    except Exception as exc:  # a RuntimeError that only says "check the input params"
        raise ProviderUnavailable(f"{WHAT}: cannot load model {str(path)!r}: {exc}") from exc


def _apply(xllamacpp: Any, params: Any, options: Mapping[str, Any]) -> None:
    """The load options of `extra_body` as llama.cpp's server parameters (its CLI's
    --batch-size, --n-gpu-layers, --flash-attn, --no-mmap/--mlock, --cache-type-k/-v)."""
    if "n_batch" in options:
        params.n_batch = options["n_batch"]
    if "n_gpu_layers" in options:
        params.n_gpu_layers = options["n_gpu_layers"]
    if "flash_attn" in options:
        kind = "ENABLED" if options["flash_attn"] else "DISABLED"
        params.flash_attn_type = xllamacpp.llama_flash_attn_type[f"LLAMA_FLASH_ATTN_TYPE_{kind}"]
    if "use_mmap" in options or "use_mlock" in options:
        mode = {(True, False): "MMAP", (True, True): "MMAP_MLOCK", (False, True): "MLOCK"}.get(
            (options.get("use_mmap", True), options.get("use_mlock", False)), "NONE"
        )
        params.load_mode = xllamacpp.llama_load_mode[f"LLAMA_LOAD_MODE_{mode}"]
    for key in ("cache_type_k", "cache_type_v"):
        if key in options:
            setattr(params, key, xllamacpp.ggml_type[f"GGML_TYPE_{options[key].upper()}"])


def _usage(data: dict[str, Any]) -> Usage | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


class UniversalProvider:
    """A GGUF chat model on this machine's CPUs; needs no network and no other process."""

    def __init__(self, model: ModelConfig, shared: Shared | None = None) -> None:
        """`shared`: the process's loaded models (ModelCache's); None loads this one's own."""
        self._config = model
        self._shared = shared or Shared()
        self._path = model_path(model.model)
        self._tools: bool | None = None
        self._context: int | None = None

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def supports_tools(self) -> bool:
        """Whether the model's chat template renders `tools` (read once from its header)."""
        if self._tools is None:
            try:
                template = chat_template(self._path)
            except (OSError, ValueError):
                template = None
            self._tools = template is not None and "tools" in template
        return self._tools

    def check(self) -> None:
        self._server(self._config.extra_body.body())

    def measure(self, extra: Mapping[str, object]) -> Measure:
        """The context window of one slot of the server `extra` asks for, and the model's own
        tokenizer (loading the model when it is not loaded yet); read once per server."""
        options = self._options(extra)
        server = shared_server(self._shared, self._path, options)
        key = server_key(self._shared, self._path, options)
        return self._shared.load(
            ("llama-measure", self._path, options),
            lambda: LlamaTokens(server.listening_address, key).measure(),
        )

    def _server(self, extra: Mapping[str, object]) -> Any:
        """The llama.cpp server the load options of `extra` ask for (the config's by default)."""
        return shared_server(self._shared, self._path, self._options(extra))

    def _options(self, extra: Mapping[str, object]) -> LoadOptions:
        """The load options of `extra`. A context is rounded up to a power of two and capped at
        the model's training context: each distinct set of options is a server kept for the
        process's life, so a client sending every `n_ctx` from 128 up gets a dozen of them at
        most, not thousands."""
        options = dict(split_options(extra)[0])
        if "n_ctx" in options:
            options["n_ctx"] = min(1 << (int(options["n_ctx"]) - 1).bit_length(), self._trained())
        return tuple(sorted(options.items()))

    def _trained(self) -> int:
        if self._context is None:
            try:
                self._context = train_context(self._path)
            except (OSError, ValueError) as exc:
                raise ProviderUnavailable(
                    f"{WHAT}: {str(self._path)!r} is not a readable GGUF model: {exc}"
                ) from exc
        return self._context

    def complete(self, generation: Generation) -> Completion:
        server = self._server(generation.extra)
        data = self._generate(server, self._request(generation, stream=False))
        self._raise_for_error(data)
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
            calls = wire.tool_calls(choice["message"])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise BadGateway(f"{WHAT} ({self.name}): unexpected answer {data!r:.200}") from exc
        return Completion(
            content=str(content),
            finish_reason=wire.finish(choice.get("finish_reason"), tool_calls=bool(calls)),
            usage=_usage(data),
            tool_calls=calls,
        )

    async def stream(self, generation: Generation) -> AsyncGenerator[Delta, None]:
        """Deltas as llama.cpp makes them. The library calls back on the calling thread until
        the answer is done, so the generation runs on a thread of its own (not a pool's: it
        may wait long for the model's one slot) that hands each chunk to the event loop."""
        request = self._request(generation, stream=True)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict[str, Any] | LfError | None] = asyncio.Queue()
        closed = threading.Event()

        def put(item: dict[str, Any] | LfError | None) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, item)

        def on_chunk(chunk: dict[str, Any]) -> bool:
            put(chunk)
            return closed.is_set()  # True makes llama.cpp cancel the task and free the slot

        def run() -> None:
            try:
                self._generate(self._server(generation.extra), request, on_chunk)
            except LfError as exc:  # raised again on the consumer's side
                put(exc)
            except Exception as exc:  # never a silent, empty "answer"
                put(BadGateway(f"{WHAT} ({self.name}): {type(exc).__name__}: {exc}"))
            finally:
                put(None)

        threading.Thread(target=run, name=f"{WHAT}-stream", daemon=True).start()
        finish: FinishReason | None = None
        usage: Usage | None = None
        pieces = wire.ToolCallPieces()
        ended = False
        try:
            while (chunk := await chunks.get()) is not None:
                if isinstance(chunk, LfError):
                    raise chunk
                self._raise_for_error(chunk)
                usage = _usage(chunk) or usage
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        yield Delta(content=delta["content"])
                    pieces.feed(delta.get("tool_calls"))
                    if choice.get("finish_reason"):
                        finish = wire.finish(choice["finish_reason"])
            ended = True
            calls = pieces.calls()
            yield Delta(
                finish_reason=wire.finish(finish, tool_calls=bool(calls)),
                usage=usage,
                tool_calls=calls,
            )
        finally:
            # A closed consumer cancels at the next token (the callback's answer); waiting
            # for the thread's end means the slot is free again when aclose() returns.
            closed.set()
            while not ended and await chunks.get() is not None:
                pass

    def _generate(
        self, server: Any, request: dict[str, Any], on_chunk: Callable[[Any], bool] | None = None
    ) -> Any:
        """The one call into llama.cpp; its errors come back as data, the binding's as raises."""
        try:
            if on_chunk is None:
                return server.handle_chat_completions(request)
            return server.handle_chat_completions(request, on_chunk)
        except Exception as exc:  # TypeError/ValueError from the binding, RuntimeError from C++
            raise BadGateway(f"{WHAT} ({self.name}): generation failed: {exc}") from exc

    def _request(self, generation: Generation, *, stream: bool) -> dict[str, Any]:
        """llama.cpp's request: the model's defaults, then its parameters, then the request's
        own knobs (each later one wins)."""
        defaults = BUNDLED_DEFAULTS if self._config.model == BUNDLED else {}
        request: dict[str, Any] = {**defaults, **split_options(generation.extra)[1]}
        request.update(
            messages=[wire.message_json(m) for m in generation.messages],
            max_tokens=generation.max_tokens or request.get("max_tokens") or DEFAULT_MAX_TOKENS,
            stream=stream,
        )
        if generation.tools and self.supports_tools:
            request["tools"] = [dict(tool) for tool in generation.tools]
            if generation.tool_choice is not None:
                request["tool_choice"] = generation.tool_choice
        knobs = {
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "top_k": generation.top_k,
        }
        request.update({key: value for key, value in knobs.items() if value is not None})
        request.update(generation.output())
        if stream:
            request["stream_options"] = {"include_usage": True}
        return request

    def _raise_for_error(self, data: object) -> None:
        """Translate llama.cpp's `{"error": {"code", "message", "type"}}` answers."""
        if not isinstance(data, dict) or "choices" in data:
            return
        error = data.get("error", data)
        if not isinstance(error, dict) or "message" not in error:
            return
        message = f"{WHAT} ({self.name}): {error['message']}"
        if error.get("type") == "exceed_context_size_error":
            raise BadRequest(
                f"{WHAT} ({self.name}): the conversation is {error.get('n_prompt_tokens')} "
                f"tokens, more than the model's context of {error.get('n_ctx')} tokens; "
                "send fewer or shorter messages"
            )
        if error.get("code") == 400:
            raise BadRequest(message)
        raise BadGateway(message)
