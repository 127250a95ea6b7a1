"""The chat provider protocol: one generation in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


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
    extra: dict[str, object] = field(default_factory=dict)
    """The model's `model_api_parameters`, passed through to the provider as they are."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: FinishReason
    usage: Usage | None = None


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer; the last one carries `finish_reason` (and usage if known)."""

    content: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class Provider(Protocol):
    """A chat model. Errors are LfErrors naming the model and where it runs:
    ProviderUnavailable (503: cannot load / connect), GatewayTimeout (504: no answer in time),
    BadGateway (502: an error status or something that is not the protocol)."""

    @property
    def name(self) -> str:
        """The model id (as the client sees it in responses)."""
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
