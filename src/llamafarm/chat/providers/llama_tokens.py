"""A loaded llama.cpp server's context window and tokenizer, for fitting prompts (`chat/fitting`).

xllamacpp's binding has no tokenize call, but the server it wraps always listens on a loopback
port, behind the random API key it was started with: its `/props` says the context of one slot
(the window a request gets: `n_ctx` divided among the parallel slots), `/tokenize` counts a text
with the model's own tokenizer (0.5 ms for a short message, 14 ms for 20,000 characters on one
busy core) and `/apply-template` shows what the chat template adds. These answer on the HTTP
thread, not in the generation queue, so they are quick while the model is busy.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from llamafarm.chat.providers.base import Measure, Message
from llamafarm.errors import ProviderUnavailable

TIMEOUT = 30.0
"""Seconds for one answer of the loopback server (it answers in milliseconds)."""
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback calls never go through an `HTTP_PROXY` the environment names."""


class LlamaTokens:
    """The measure of one loaded llama.cpp server, read once."""

    def __init__(self, address: str, key: str) -> None:
        self._address = address.rstrip("/")
        self._key = key

    def measure(self) -> Measure:
        """The slot's window, the model's tokenizer, and its template's cost: the tokens of a
        conversation of one empty user message (with the special tokens the server adds), then
        what each further message adds."""
        props = self._call("/props")
        window = int(props["default_generation_settings"]["n_ctx"])
        one = self._templated([Message("user", "")])
        # a conversation may not end with the assistant (that is a prefill, templated apart)
        three = self._templated(
            [Message("user", ""), Message("assistant", ""), Message("user", "")]
        )
        per_message = max(-(-(three - one) // 2), 1)
        return Measure(
            window=window, count=self.count, per_message=per_message, frame=one, exact=True
        )

    def count(self, text: str, *, special: bool = False) -> int:
        body = {"content": text, "add_special": special, "parse_special": special}
        return len(self._call("/tokenize", body)["tokens"])

    def _templated(self, messages: list[Message]) -> int:
        body = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
        return self.count(str(self._call("/apply-template", body)["prompt"]), special=True)

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self._address + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )
        try:
            with _DIRECT.open(request, timeout=TIMEOUT) as response:
                return json.load(response)
        except (OSError, ValueError) as exc:
            raise ProviderUnavailable(
                f"llama.cpp's tokenizer ({path}) did not answer: {exc}"
            ) from exc
