"""The chat provider protocol: one generation in, text and tool calls (whole or streamed) out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]
ToolChoice = str | Mapping[str, Any]
"""OpenAI's `tool_choice`: "auto", "none", "required" or `{"type": "function", ...}`."""


@dataclass(frozen=True)
class ToolCall:
    """A function the model asks to call; `arguments` is JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """A turn: text, or an assistant's `tool_calls`, or a `tool` result answering `tool_call_id`."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class Generation:
    """What to generate: the whole conversation as sent to the model, and sampling knobs.

    None leaves a knob to the provider's default.
    """

    messages: Sequence[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    """OpenAI's `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`."""
    extra: dict[str, object] = field(default_factory=dict)
    """The model's `model_api_parameters` and `extra_body` (and a request's `n_ctx`), passed
    through to the provider as they are; a local model takes its load options out."""
    tools: Sequence[Mapping[str, Any]] = ()
    """OpenAI function tools (`{"type": "function", "function": {name, description,
    parameters}}`) the model may call; sent only by providers whose `supports_tools` is true."""
    tool_choice: ToolChoice | None = None

    def output(self) -> dict[str, Any]:
        """`stop`, `seed` and `response_format` as a request body has them (those set)."""
        body: dict[str, Any] = {"stop": list(self.stop)} if self.stop else {}
        if self.seed is not None:
            body["seed"] = self.seed
        if self.response_format is not None:
            body["response_format"] = dict(self.response_format)
        return body


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: FinishReason
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer; the last one carries `finish_reason` (and usage if known)
    and the answer's `tool_calls`, each whole (providers assemble the pieces a server sends)."""

    content: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class Provider(Protocol):
    """A chat model. Errors are LfErrors naming the model and where it runs:
    ProviderUnavailable (503: cannot load / connect), GatewayTimeout (504: no answer in time),
    BadGateway (502: an error status or something that is not the protocol)."""

    @property
    def name(self) -> str:
        """The model id (as the client sees it in responses)."""
        ...

    @property
    def supports_tools(self) -> bool:
        """Whether the model can be offered `tools`; when it cannot, none are sent to it."""
        ...

    def complete(self, generation: Generation) -> Completion: ...

    def stream(self, generation: Generation) -> AsyncGenerator[Delta, None]:
        """Deltas as the model makes them, on the event loop; the last one carries the
        finish reason. Closing the iterator early (`aclose()`: a client went away) stops the
        generation and frees what it holds."""
        ...

    def check(self) -> None:
        """A cheap probe; raises the errors above with the reason."""
        ...


MESSAGE_TOKENS = 8
"""What a chat template adds around each message (ChatML's `<|im_start|>role\n` and
`<|im_end|>\n` are 5), when the model cannot say."""
FRAME_TOKENS = 32
"""What a chat template adds once (the generation prompt, a default system prompt), when the
model cannot say."""


def estimate_tokens(text: str) -> int:
    """A conservative token count without a tokenizer: one per 3 bytes of UTF-8. English prose
    is about 4 bytes a token and code or markdown 3.3-3.7 with the bundled model's tokenizer;
    scripts written in multi-byte characters can take more tokens than this says."""
    return -(-len(text.encode()) // 3)


@dataclass(frozen=True)
class Measure:
    """How much a model can read, and how its prompt is counted: `window` tokens (prompt and
    answer), `count` tokens in a text, `per_message` and `frame` tokens its chat template adds."""

    window: int
    count: Callable[[str], int] = estimate_tokens
    per_message: int = MESSAGE_TOKENS
    frame: int = FRAME_TOKENS
    exact: bool = False
    """Whether `count` is the model's own tokenizer (else `estimate_tokens`)."""


@runtime_checkable
class Measuring(Protocol):
    """A provider that knows its model's context window and tokenizer (a local model)."""

    def measure(self, extra: Mapping[str, object]) -> Measure:
        """The measure of the model `extra`'s load options load (loading it if needed)."""
        ...
