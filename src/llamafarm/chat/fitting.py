"""Fitting a conversation to the model's context window, so a long session never overflows.

The window holds the prompt and the answer. What is kept, in this order:

1. room for the answer: the request's `max_tokens` (with the thinking budget), at most half the
   window (llama.cpp ends an answer that reaches the end of the window with `length`);
2. the system messages and the current turn (the last user message and what follows it): always;
   when they alone do not fit, the request is a 400 naming the message's tokens and the window;
3. the retrieved context, up to `rag_share` of the prompt's room: whole chunks, the lowest
   scores dropped first;
4. the history, newest turn first: whole turns (a user message with the assistant and tool
   messages that answer it), so an oldest turn is dropped before a newer one and a tool result
   never loses its call.

Pure: the tokens are counted by the `Measure` given (the model's tokenizer or an estimate), and
a text is counted once however often it is weighed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llamafarm.chat.providers.base import Measure, Message
from llamafarm.config.models import RAG_CONTEXT_SHARE
from llamafarm.errors import BadRequest
from llamafarm.rag.stores.base import Hit


@dataclass(frozen=True)
class Fitted:
    """The conversation the model sees, and what was left out of it."""

    messages: list[Message]
    window: int | None = None
    """None: the window is not known, nothing was fitted."""
    prompt_tokens: int = 0
    """The prompt's tokens as counted (the model's own count may differ a little)."""
    dropped_turns: int = 0
    dropped_chunks: int = 0
    hits: tuple[Hit, ...] = ()
    """The retrieved chunks the model sees."""

    @property
    def dropped(self) -> bool:
        return bool(self.dropped_turns or self.dropped_chunks)

    def summary(self) -> dict[str, int | None]:
        """What the event log keeps: the window, the prompt's tokens, what was dropped."""
        return {
            "window": self.window,
            "prompt_tokens": self.prompt_tokens,
            "dropped_turns": self.dropped_turns,
            "dropped_chunks": self.dropped_chunks,
        }

    def header(self) -> str:
        """The `X-LF-Context-Dropped` header's value."""
        return f"turns={self.dropped_turns}; chunks={self.dropped_chunks}"


class _Weigher:
    """Tokens of messages by a measure, each text counted once."""

    def __init__(self, measure: Measure) -> None:
        self.measure = measure
        self._counted: dict[str, int] = {}

    def text(self, text: str) -> int:
        if text not in self._counted:
            self._counted[text] = self.measure.count(text) if text else 0
        return self._counted[text]

    def message(self, message: Message) -> int:
        calls = sum(self.text(c.name) + self.text(c.arguments) for c in message.tool_calls)
        return self.measure.per_message + self.text(message.content) + calls

    def all(self, messages: Sequence[Message]) -> int:
        return sum(self.message(m) for m in messages)


def fit(
    *,
    system: Sequence[Message],
    conversation: Sequence[Message],
    hits: Sequence[Hit],
    render: Callable[[Sequence[Hit]], str],
    measure: Measure,
    answer_tokens: int,
    rag_share: float = RAG_CONTEXT_SHARE,
) -> Fitted:
    """The prompt `[*system, context of hits, *conversation]` cut to `measure.window`.
    `render` makes the context's system message from the chunks kept."""
    weigh = _Weigher(measure)
    room = measure.window - min(answer_tokens, measure.window // 2) - measure.frame
    pinned, history, current = split(conversation)
    fixed = weigh.all(system) + weigh.all(pinned) + weigh.all(current)
    if fixed > room:
        raise _too_long(weigh.all(current), fixed, measure.window, answer_tokens)
    kept_hits = _chunks(hits, render, weigh, min(int(room * rag_share), room - fixed))
    context = [Message("system", render(kept_hits))] if kept_hits else []
    used = fixed + weigh.all(context)
    kept_turns: list[list[Message]] = []
    for turn in reversed(history):
        cost = weigh.all(turn)
        if used + cost > room:
            break
        used += cost
        kept_turns.append(turn)
    kept = {id(m) for turn in kept_turns for m in turn} | {id(m) for m in (*pinned, *current)}
    return Fitted(
        messages=[*system, *context, *(m for m in conversation if id(m) in kept)],
        window=measure.window,
        prompt_tokens=used + measure.frame,
        dropped_turns=len(history) - len(kept_turns),
        dropped_chunks=len(hits) - len(kept_hits),
        hits=tuple(kept_hits),
    )


def split(
    conversation: Sequence[Message],
) -> tuple[list[Message], list[list[Message]], list[Message]]:
    """The conversation's system messages (always kept), its earlier turns (oldest first; each
    a user message and what answers it, the first one perhaps without its user message), and
    its current turn (from the last user message on: a question, or a question with the tool
    calls and results of this completion)."""
    pinned = [m for m in conversation if m.role == "system"]
    rest = [m for m in conversation if m.role != "system"]
    last = max((i for i, m in enumerate(rest) if m.role == "user"), default=0)
    turns: list[list[Message]] = []
    for message in rest[:last]:
        if message.role == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return pinned, turns, rest[last:]


def _chunks(
    hits: Sequence[Hit], render: Callable[[Sequence[Hit]], str], weigh: _Weigher, cap: int
) -> list[Hit]:
    """The chunks whose context fits `cap` tokens: the lowest scores dropped first, the rest
    kept in their order."""
    kept = list(hits)
    while kept and weigh.message(Message("system", render(kept))) > cap:
        kept.remove(min(kept, key=lambda hit: hit.score))
    return kept


def _too_long(message: int, prompt: int, window: int, answer_tokens: int) -> BadRequest:
    with_system = f" ({prompt} with the system prompt)" if prompt != message else ""
    return BadRequest(
        f"The message is {message} tokens{with_system}, too long for the model's context "
        f"window of {window} tokens with room kept for the answer "
        f"({min(answer_tokens, window // 2)} tokens): send a shorter message"
    )
