"""The in-process GGUF provider, against the real bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from llamafarm.chat.providers import universal
from llamafarm.chat.providers.base import Completion, Delta, Generation, Message
from llamafarm.chat.providers.universal import (
    BUNDLED,
    BUNDLED_DEFAULTS,
    BUNDLED_LOAD,
    DEFAULT_MAX_TOKENS,
    MAX_CONTEXT,
    UniversalProvider,
    bundled_path,
)
from llamafarm.config.models import ModelConfig
from llamafarm.errors import BadGateway, BadRequest, ProviderUnavailable
from llamafarm.models import gguf_header
from llamafarm.models.gguf_header import chat_template, train_context
from llamafarm.shared import Shared


def config(model: str = BUNDLED) -> ModelConfig:
    return ModelConfig(name="local", provider="universal", model=model)


def ask(
    text: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stop: Sequence[str] = (),
) -> Generation:
    return Generation(
        messages=[Message(role="user", content=text)],
        max_tokens=max_tokens,
        temperature=temperature,
        stop=stop,
    )


def drain(provider: UniversalProvider, generation: Generation) -> list[Delta]:
    """Every delta of a stream, read on an event loop of its own."""

    async def run() -> list[Delta]:
        return [delta async for delta in provider.stream(generation)]

    return asyncio.run(run())


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    shared = Shared()
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def provider(shared: Shared) -> UniversalProvider:
    provider = UniversalProvider(config(), shared)
    provider.check()
    return provider


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ProviderUnavailable, match=re.escape(str(missing))):
        UniversalProvider(config(str(missing)))


def test_unknown_name_lists_the_bundled_model() -> None:
    with pytest.raises(ProviderUnavailable, match=f"{BUNDLED}.*path to a GGUF file"):
        UniversalProvider(config("llama3.1:8b"))


def test_a_file_that_is_not_gguf_fails_to_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    provider = UniversalProvider(config(str(junk)))  # a path is checked for existence only
    with pytest.raises(ProviderUnavailable, match="not a readable GGUF model"):
        provider.check()


def test_context_is_read_from_the_gguf_header() -> None:
    assert train_context(bundled_path()) == 8192  # SmolLM2's; the provider uses less
    assert BUNDLED_LOAD["n_ctx"] < MAX_CONTEXT < 8192


def servers(shared: Shared) -> set[tuple[int, int]]:
    """The (context per slot, slots) of each llama.cpp server loaded in `shared`."""
    return {(r.details["context"], r.details["slots"]) for r in shared.residents.loaded()}


@pytest.mark.slow
def test_answers(provider: UniversalProvider) -> None:
    result = provider.complete(ask("Say hello.", max_tokens=40))
    assert result.content.strip()
    assert result.usage is not None
    assert result.usage.prompt_tokens > 3
    assert 0 < result.usage.completion_tokens <= 40


@pytest.mark.slow
def test_max_tokens_cuts_with_length(provider: UniversalProvider) -> None:
    result = provider.complete(ask("Write a long poem about the sea.", max_tokens=3))
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 3


@pytest.mark.slow
def test_stop_sequence_ends_the_answer(provider: UniversalProvider) -> None:
    free = provider.complete(ask("Say hello.", max_tokens=20, temperature=0))
    assert "!" in free.content  # the premise: this greedy answer has a "!" to stop at
    result = provider.complete(ask("Say hello.", max_tokens=20, temperature=0, stop=["!"]))
    assert result.finish_reason == "stop"
    assert result.content == free.content.split("!")[0]


@pytest.mark.slow
def test_stream_equals_the_whole_answer(provider: UniversalProvider) -> None:
    generation = ask("What is the capital of France?", max_tokens=40, temperature=0)
    whole = provider.complete(generation)
    deltas = drain(provider, generation)
    *pieces, last = deltas
    assert len(pieces) > 3
    assert all(d.content and d.finish_reason is None for d in pieces)
    assert "".join(d.content for d in pieces) == whole.content
    assert last.content == ""
    assert last.finish_reason == whole.finish_reason
    assert last.usage == whole.usage


@pytest.mark.slow
def test_stream_reports_length(provider: UniversalProvider) -> None:
    deltas = drain(provider, ask("Write a long poem about the sea.", max_tokens=5))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 5


@pytest.mark.slow
def test_closing_a_stream_stops_the_generation(provider: UniversalProvider) -> None:
    async def three() -> list[Delta]:
        stream = provider.stream(ask("Write a very long story about a dragon.", max_tokens=2000))
        first = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        return first

    assert all(d.content for d in asyncio.run(three()))
    # The model is free again: the story's 2000 tokens are not generated first (the test's
    # timeout would catch that on a loaded machine, where they take minutes).
    result = provider.complete(ask("Say hello.", max_tokens=10))
    assert result.content


@pytest.mark.slow
def test_concurrent_generations_do_not_mix(provider: UniversalProvider) -> None:
    questions = ["Say hello.", "What is 2+2?", "Name a colour."]
    alone = [provider.complete(ask(q, max_tokens=12, temperature=0)) for q in questions]

    def answer(index: int) -> Completion:
        generation = ask(questions[index], max_tokens=12, temperature=0)
        if index % 2:  # half of them streamed, so both paths share the model at once
            deltas = drain(provider, generation)
            return Completion(
                content="".join(d.content for d in deltas),
                finish_reason=deltas[-1].finish_reason or "stop",
                usage=deltas[-1].usage,
            )
        return provider.complete(generation)

    with ThreadPoolExecutor(len(questions)) as pool:
        together = list(pool.map(answer, range(len(questions))))
    assert [r.content for r in together] == [r.content for r in alone]


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_bad_request(provider: UniversalProvider) -> None:
    generation = ask("hello " * 5000, max_tokens=5)
    window = BUNDLED_LOAD["n_ctx"]
    with pytest.raises(BadRequest, match=f"more than the model's context of {window}"):
        provider.complete(generation)
    with pytest.raises(BadRequest, match="more than the model's context"):
        drain(provider, generation)
    assert provider.complete(ask("Say hello.", max_tokens=5)).content  # still serving


def test_measure_is_the_slots_window_and_the_models_own_tokenizer(
    provider: UniversalProvider,
) -> None:
    measure = provider.measure({})
    assert measure.exact
    assert measure.window == BUNDLED_LOAD["n_ctx"]  # one slot's, not the whole cache's
    assert measure.count("") == 0
    assert 8 <= measure.count("The quick brown fox jumps over the lazy dog.") <= 12
    # what fitting counts is never less than what llama.cpp reads, and close to it
    messages = [Message("system", "Be brief."), Message("user", "Name a colour. " * 20)]
    done = provider.complete(Generation(messages=messages, max_tokens=1))
    counted = measure.frame + sum(measure.count(m.content) + measure.per_message for m in messages)
    assert done.usage is not None
    assert done.usage.prompt_tokens <= counted <= done.usage.prompt_tokens + 40
    assert provider.measure({}) is measure  # read once per server


@pytest.mark.slow
def test_the_model_is_loaded_once_per_file(provider: UniversalProvider, shared: Shared) -> None:
    loaded = [(r.path, r.loaded_at) for r in shared.residents.loaded()]
    other = ModelConfig(name="other", provider="universal", model=BUNDLED)
    UniversalProvider(other, shared).check()
    assert [(r.path, r.loaded_at) for r in shared.residents.loaded()] == loaded


# --- tools --------------------------------------------------------------------------------

TOOLS_TEMPLATE = """{%- if tools %}<|im_start|>system
You can call these functions:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}To call one, answer <tool_call>{"name": NAME, "arguments": ARGS}</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>{"name": "{{ call.function.name }}", \
"arguments": {{ call.function.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Today's weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def with_template(source: Path, target: Path, template: str) -> None:
    """A copy of a GGUF model whose `tokenizer.chat_template` is `template`: the metadata is
    written again, the tensor infos and data copied (the data padded to its alignment)."""
    data = source.read_bytes()
    reader = io.BytesIO(data)

    def take(fmt: str) -> int:
        value: int = struct.unpack("<" + fmt, reader.read(struct.calcsize("<" + fmt)))[0]
        return value

    assert reader.read(4) == b"GGUF"
    version, tensors, entries = take("I"), take("Q"), take("Q")
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, tensors, entries))
    for _ in range(entries):
        start = reader.tell()
        key = reader.read(take("Q"))
        kind = take("I")
        gguf_header._skip(reader, kind)
        if key == b"tokenizer.chat_template":
            text = template.encode()
            out += struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(text)) + text
        else:
            out += data[start : reader.tell()]
    start = reader.tell()
    for _ in range(tensors):
        reader.seek(take("Q"), 1)  # name
        reader.seek(8 * take("I"), 1)  # dimensions
        take("I"), take("Q")  # type, offset
    out += data[start : reader.tell()]
    alignment = 32  # GGUF's default; the bundled model sets no other
    out += b"\0" * (-len(out) % alignment)
    out += data[reader.tell() + (-reader.tell() % alignment) :]
    target.write_bytes(out)


def test_the_bundled_model_is_offered_no_tools() -> None:
    template = chat_template(bundled_path())
    assert template is not None and "tools" not in template
    assert UniversalProvider(config()).supports_tools is False


@pytest.mark.slow
def test_a_model_whose_template_renders_tools_is_sent_them(tmp_path: Path) -> None:
    path = tmp_path / "tools.gguf"
    with_template(bundled_path(), path, TOOLS_TEMPLATE)
    assert chat_template(path) == TOOLS_TEMPLATE
    provider = UniversalProvider(config(str(path)))
    assert provider.supports_tools
    question = ask("What is the weather in Paris?", max_tokens=1)
    plain = provider.complete(question)
    offered = provider.complete(replace(question, tools=[WEATHER]))
    streamed = drain(provider, replace(question, tools=[WEATHER]))[-1]
    # The tool's schema reached the prompt (the template wrote it into a system message).
    assert plain.usage is not None and offered.usage is not None
    assert offered.usage.prompt_tokens > plain.usage.prompt_tokens + 20
    assert streamed.usage == offered.usage


def test_a_crash_in_the_runtime_is_a_bad_gateway_not_an_empty_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*args: object) -> object:
        raise RuntimeError("binding exploded")

    monkeypatch.setattr(universal, "_load", crash)
    with pytest.raises(BadGateway, match="RuntimeError: binding exploded"):
        drain(UniversalProvider(config()), ask("Say hello.", max_tokens=5))


# --- LlamaFarm's extra_body load options and request fields ---------------------------------


@pytest.mark.slow
def test_response_format_holds_the_model_to_a_json_schema(provider: UniversalProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"sunny": {"type": "boolean"}},
        "required": ["sunny"],
        "additionalProperties": False,
    }
    wanted = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}
    question = replace(
        ask("Is it sunny in Paris today?", max_tokens=48, temperature=0.0), response_format=wanted
    )
    whole = json.loads(provider.complete(question).content)
    assert set(whole) == {"sunny"} and isinstance(whole["sunny"], bool)
    streamed = "".join(d.content for d in drain(provider, question))
    assert isinstance(json.loads(streamed)["sunny"], bool)
    anything = replace(question, response_format={"type": "json_object"})
    # any object: the grammar makes it begin as one (it may run past max_tokens)
    assert provider.complete(anything).content.lstrip().startswith("{")


@pytest.mark.slow
def test_the_same_seed_samples_the_same_answer(provider: UniversalProvider) -> None:
    question = replace(ask("Name a colour.", max_tokens=12, temperature=1.5), seed=7)
    assert provider.complete(question).content == provider.complete(question).content


@pytest.mark.slow
def test_extra_body_load_options_start_llama_cpp_with_them(shared: Shared) -> None:
    options = {"n_ctx": 256, "n_batch": 64, "n_threads": 1, "flash_attn": False}
    options |= {"use_mmap": True, "use_mlock": False, "cache_type_k": "q8_0"}
    model = ModelConfig(
        name="small", provider="universal", model=BUNDLED, extra_body={**options, "min_p": 0.1}
    )
    provider = UniversalProvider(model, shared)
    provider.check()
    slots = BUNDLED_LOAD["n_parallel"]
    assert (256, slots) in servers(shared)
    long = ask("Tell me about glaciers. " * 60, max_tokens=4)
    with pytest.raises(BadRequest, match="model's context of 256 tokens"):
        provider.complete(replace(long, extra=model.extra_body.body()))
    # a request's n_ctx (the chat request's field) loads the model with that context, rounded
    # up to a power of two and never more than the model was trained on (8192)
    bigger = {**model.extra_body.body(), "n_ctx": 1000}
    assert provider.complete(replace(long, extra=bigger)).usage is not None
    assert (1024, slots) in servers(shared)
    provider.check()  # the config's server is still there
    huge = {**model.extra_body.body(), "n_ctx": 100_000}
    provider.complete(replace(ask("Hi.", max_tokens=1), extra=huge))
    assert (8192, slots) in servers(shared)


def test_the_bundled_model_is_asked_with_its_defaults() -> None:
    request = UniversalProvider(config())._request(ask("Hi"), stream=False)
    assert {key: request[key] for key in BUNDLED_DEFAULTS} == dict(BUNDLED_DEFAULTS)
    assert request["max_tokens"] < 200 and request["dry_multiplier"] > 0


def test_the_models_parameters_then_the_request_win_over_the_defaults() -> None:
    provider = UniversalProvider(config())
    model = {"dry_multiplier": 0.0, "max_tokens": 50, "temperature": 0.7}
    request = provider._request(replace(ask("Hi"), extra=model), stream=False)
    assert (request["dry_multiplier"], request["max_tokens"], request["temperature"]) == (
        0.0,
        50,
        0.7,
    )
    own = replace(ask("Hi", max_tokens=400, temperature=0.9), extra=model)
    request = provider._request(own, stream=False)
    assert (request["max_tokens"], request["temperature"]) == (400, 0.9)
    assert request["repeat_penalty"] == BUNDLED_DEFAULTS["repeat_penalty"]


def test_another_gguf_gets_llama_cpps_own_defaults() -> None:
    request = UniversalProvider(config(str(bundled_path())))._request(ask("Hi"), stream=False)
    assert request["max_tokens"] == DEFAULT_MAX_TOKENS
    assert not set(BUNDLED_DEFAULTS) - {"max_tokens"} & set(request)


@pytest.mark.slow
def test_llama_cpp_takes_the_defaults(provider: UniversalProvider) -> None:
    generation = replace(ask("Say hello."), extra={"max_tokens": 8})
    result = provider.complete(generation)
    assert result.usage is not None and 0 < result.usage.completion_tokens <= 8
