"""A request's hold on its chat session: the turn taken on one thread, given back on another,
and what the request adds to the session."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from llamafarm.chat import sessions
from llamafarm.chat.providers.base import Message
from llamafarm.state import StateDB


def new_turn(messages: Sequence[Message]) -> list[Message]:
    """What a request adds to its session: the user messages after its last assistant answer
    (a client that resends the whole conversation adds only its new question; one that sends
    the results of its tool calls adds the question they answer). Tool calls and results are
    not kept. Empty when there is no user message: nothing is stored then."""
    answered = (i for i, m in enumerate(messages) if m.role == "assistant" and not m.tool_calls)
    last = max(answered, default=-1)
    return [m for m in messages[last + 1 :] if m.role == "user"]


class Lease:
    """A session turn entered on one thread and given back on another, exactly once."""

    def __init__(self, manager: AbstractContextManager[list[Message]]) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._held = False

    def take(self) -> list[Message]:
        history = self.manager.__enter__()
        self._held = True
        return history

    def give_back(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self.manager.__exit__(None, None, None)


@dataclass(frozen=True)
class Key:
    """The sessions of one project; a None session id (stateless) takes no turn."""

    db: StateDB
    namespace: str
    project: str

    def turn(self, session_id: str | None) -> AbstractContextManager[list[Message]]:
        if session_id is None:
            return nullcontext([])
        return sessions.turn(
            self.db, namespace=self.namespace, project=self.project, session_id=session_id
        )

    def store(self, session_id: str, messages: list[Message]) -> None:
        sessions.append(
            self.db,
            namespace=self.namespace,
            project=self.project,
            session_id=session_id,
            messages=messages,
        )
