"""Separating a model's `<think>…</think>` reasoning from its answer, also as text streams in."""

from __future__ import annotations

from dataclasses import dataclass, field

OPEN, CLOSE = "<think>", "</think>"


@dataclass
class ThinkSplitter:
    """Feed text as it comes; get back what is surely answer and surely thinking so far.

    A tag may arrive split across pieces, so a tail that could be the start of a tag is held
    back until the next piece (or `finish`) settles it.
    """

    thinking: list[str] = field(default_factory=list)
    tentative: bool = False
    """The text may begin inside a think block whose opening tag was in the prompt (Qwen3,
    DeepSeek): hold it until a `</think>` (it was thinking), a `<think>` or the end (it was
    answer) settles it. For requests that asked to think, whose answer follows the thinking."""
    _inside: bool = False
    _pending: str = ""

    def feed(self, text: str) -> str:
        """The answer text that can be shown now; thinking is collected in `thinking`."""
        if "<" not in text and not self._pending and not self.tentative:
            if not self._inside:
                return text  # no tag can begin here: the common case, a token of the answer
            self._emit(text, [])
            return ""
        self._pending += text
        answer: list[str] = []
        if self.tentative:
            close, opening = self._pending.find(CLOSE), self._pending.find(OPEN)
            if close < 0 and opening < 0:
                return ""
            self.tentative = False
            if close >= 0 and (opening < 0 or close < opening):
                self.thinking.append(self._pending[:close])
                self._pending = self._pending[close + len(CLOSE) :]
        while True:
            tag = CLOSE if self._inside else OPEN
            at = self._pending.find(tag)
            if at >= 0:
                self._emit(self._pending[:at], answer)
                self._pending = self._pending[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_tag(self._pending, tag)
            self._emit(self._pending[: len(self._pending) - keep], answer)
            self._pending = self._pending[len(self._pending) - keep :]
            return "".join(answer)

    def finish(self) -> str:
        """The rest of the answer once the text is complete; an unclosed block is thinking."""
        rest, self._pending = self._pending, ""
        answer: list[str] = []
        self._emit(rest, answer)
        return "".join(answer)

    @property
    def thought(self) -> str:
        return "".join(self.thinking).strip()

    def _emit(self, text: str, answer: list[str]) -> None:
        if text:
            (self.thinking if self._inside else answer).append(text)


def split(text: str) -> tuple[str, str]:
    """A whole answer as (answer, thinking); a `</think>` with no opening tag closes a block
    that began with the text (some chat templates open it in the prompt)."""
    if CLOSE in text and OPEN not in text.split(CLOSE, 1)[0]:
        text = OPEN + text
    splitter = ThinkSplitter()
    answer = splitter.feed(text) + splitter.finish()
    return answer.strip(), splitter.thought


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
