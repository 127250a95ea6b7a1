"""The offline chat provider: a GGUF model run in-process with xllamacpp (llama.cpp).

xllamacpp wraps llama.cpp's server: its `handle_chat_completions` takes an OpenAI-style request,
applies the model's chat template, and answers in OpenAI's shapes (errors as `{"error": ...}`).

Tools are offered only to a model whose chat template renders them (it mentions `tools`):
llama.cpp drops the `tools` of a request whose template has no place for them, so the model
would never see them. The bundled SmolLM2-135M-Instruct's template has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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
from llamafarm.models.gguf_header import (
    KV_TYPE_BYTES,
    chat_template,
    kv_values_per_token,
    train_context,
)
from llamafarm.names import hf_model_id
from llamafarm.shared import Shared
from llamafarm.system.cpus import chat_threads

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
"""Tokens of context of one slot (prompt + answer); less when the model was trained on less."""
DEFAULT_SLOTS = 4
"""Generations a model serves at once (llama.cpp's slots; `extra_body.n_parallel`). Each slot
has a KV cache of its own, so memory grows with them: 4 is llama.cpp's own default."""
BUNDLED_LOAD: Mapping[str, int] = {"n_parallel": 8, "n_ctx": 2048}
"""The bundled model's slots and context per slot: 8 people chat at once without one waiting
for another's whole answer, in 0.5 GB (bench/chat.py measures both; its answers are short)."""
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


LoadOptions = tuple[tuple[str, Any], ...]
"""`extra_body`'s load options (n_ctx, n_batch, ...) that were set, sorted: a hashable key."""


def split_options(extra: Mapping[str, object]) -> tuple[LoadOptions, dict[str, Any]]:
    """The load options of a generation's `extra`, and the rest (which goes in the request)."""
    options = tuple(sorted((k, v) for k, v in extra.items() if k in LOAD_OPTIONS and v is not None))
    return options, {k: v for k, v in extra.items() if k not in LOAD_OPTIONS}


class LlamaServer:
    """A llama.cpp server of one GGUF file, loaded with one set of options: the model's weights
    and a KV cache for each of its slots. Its generations run at once, one per slot, decoded
    together (continuous batching), each in a context of its own; more wait in llama.cpp's
    queue, first come first served. `Residents` keeps it, by file and options."""

    def __init__(self, path: Path, options: Mapping[str, Any]) -> None:
        # The library always opens an HTTP server on a free loopback port; only `measure`
        # calls it, so a random key that is never shared shuts it to everyone else.
        self._key = secrets.token_urlsafe(32)
        self.server = _load(path, options, self._key)
        self._measure: Measure | None = None
        self._lock = threading.Lock()

    def measure(self) -> Measure:
        """The context window of one slot and the model's own tokenizer, read once."""
        with self._lock:
            if self._measure is None:
                address = self.server.listening_address
                self._measure = LlamaTokens(address, self._key).measure()
            return self._measure


def memory_estimate(size: int, per_token: int | None, options: Mapping[str, Any]) -> int:
    """What a server takes in memory, about: the file (`size`; mapped, and read whole by the
    first generation) plus the KV cache of every slot (`per_token` values a token adds to it,
    `kv_values_per_token`). bench/chat.py prints it beside the RSS it measures."""
    if per_token is None:
        return size
    per_value = (
        KV_TYPE_BYTES[options.get("cache_type_k", "f16")]
        + KV_TYPE_BYTES[options.get("cache_type_v", "f16")]
    ) / 2
    return size + int(per_token * per_value * options["n_ctx"] * options["n_parallel"])


def _load(path: Path, options: Mapping[str, Any], key: str) -> Any:
    """The server of `options`, which hold the context of one slot (`n_ctx`) and the number of
    slots (`n_parallel`); llama.cpp divides its context among the slots."""
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
    params.n_ctx = min(options["n_ctx"], trained) * options["n_parallel"]
    params.n_parallel = options["n_parallel"]
    params.kv_unified = False  # a context per slot: one long chat never starves the others
    params.cpuparams.n_threads = options.get("n_threads") or chat_threads()
    params.cpuparams_batch.n_threads = options.get("n_threads") or chat_threads()
    _apply(xllamacpp, params, options)
    params.verbosity = 1  # errors only; llama.cpp logs every request at the default
    params.api_keys = [key]
    params.endpoint_metrics = True  # its counters, for `handle_metrics` (tests, bench)
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
        self._kv: tuple[int, int | None] | None = None

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
        """Load the model the config names (with its `extra_body`), if it is not loaded."""
        with self._server(self._config.extra_body.body()):
            pass

    def measure(self, extra: Mapping[str, object]) -> Measure:
        """The context window of one slot of the server `extra` asks for, and the model's own
        tokenizer (loading the model when it is not loaded yet); read once per server."""
        with self._server(extra) as server:
            return server.measure()

    @contextlib.contextmanager
    def _server(self, extra: Mapping[str, object]) -> Iterator[LlamaServer]:
        """The llama.cpp server the load options of `extra` ask for (the config's by default),
        loaded when it is not, and kept loaded while the block runs."""
        options = self._options(extra)
        with self._shared.residents.use(
            ("llama-server", self._path, options),
            lambda: LlamaServer(self._path, dict(options)),
            name=self._config.model,
            path=str(self._path),
            size=memory_estimate(*self._footprint(), dict(options)),
            pinned=self._config.keep_loaded,
            details={"slots": dict(options)["n_parallel"], "context": dict(options)["n_ctx"]},
        ) as server:
            yield server

    def _options(self, extra: Mapping[str, object]) -> LoadOptions:
        """The load options of `extra` over the model's defaults: `n_parallel` slots (8 for the
        bundled model, else DEFAULT_SLOTS) of `n_ctx` tokens each (the bundled model's 2048,
        else MAX_CONTEXT). A context is rounded up to a power of two and capped at the model's
        training context: each distinct set of options is a server of its own, so a client
        sending every `n_ctx` from 128 up gets a dozen of them at most, not thousands."""
        defaults = BUNDLED_LOAD if self._path == bundled_path() else {}
        options = {**defaults, **dict(split_options(extra)[0])}
        context = int(options.get("n_ctx") or MAX_CONTEXT)
        options["n_ctx"] = min(1 << (context - 1).bit_length(), self._trained())
        options["n_parallel"] = int(options.get("n_parallel") or DEFAULT_SLOTS)
        return tuple(sorted(options.items()))

    def _footprint(self) -> tuple[int, int | None]:
        """The file's size and the values one token adds to its KV cache, read once."""
        if self._kv is None:
            try:
                self._kv = self._path.stat().st_size, kv_values_per_token(self._path)
            except (OSError, ValueError):
                self._kv = 0, None  # the load that follows says what is wrong
        return self._kv

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
        with self._server(generation.extra) as server:
            data = self._generate(server.server, self._request(generation, stream=False))
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
        may wait long for a free slot) that hands each chunk to the event loop."""
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
                with self._server(generation.extra) as server:
                    self._generate(server.server, request, on_chunk)
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
