"""One chat turn, from a parsed request to its answer kept in the session: `complete` answers
whole, `stream` in batches of OpenAI chunks.

1. The session is opened (unless the request is stateless) and its turn taken, before the model
   is chosen and the context retrieved, so a bad request is a plain error even when streaming.
2. `prepare` picks the model, retrieves context and assembles the prompt; the tools are opened.
3. The rounds run (`rounds`). A stream's first delta is awaited before its response begins, so
   a provider that is down, slow or broken is an error, not an event in a 200.
4. The answer is stored in the session (not while the client has tool calls to run), the turn
   given back, and the `inference` event written once the response is out.

Everything runs on the event loop except what blocks, which runs on the threads of
`ChatServices`: waiting for and giving back a session's turn, storing the answer, a whole
answer's provider call, retrieval, a model's first use, and the event-log writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio

from llamafarm.chat import responses, rounds, sessions
from llamafarm.chat.cache import ChatModelCache
from llamafarm.chat.deltas import merged, redacted
from llamafarm.chat.fitting import Fitted
from llamafarm.chat.inference import InferenceLog
from llamafarm.chat.lease import Key, Lease, new_turn
from llamafarm.chat.prepare import ChatRequest, Prepared, prepare, toolbox
from llamafarm.chat.providers.base import Completion, Delta, Generation, Message
from llamafarm.chat.tools import McpPool, Toolbox
from llamafarm.errors import LfError
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.state import StateDB

T = TypeVar("T")

READ_AHEAD = 256
"""Deltas read from the provider ahead of the client; a slower client holds the provider back."""

Chunks = tuple[list[dict[str, Any]], bool]
"""OpenAI chunks to send in one write, and whether they end the stream."""


class ChatServices:
    """What every chat turn uses, built once with the app and closed with it. Its threads are
    apart from the server's default pool and from each other: a request waiting for its
    session's turn must never take the threads the turn it waits for needs to finish."""

    def __init__(
        self,
        *,
        db: StateDB,
        projects: ProjectStore,
        models: ChatModelCache,
        mcp_pool: McpPool,
        session_ttl: float,
    ) -> None:
        self.db, self.projects, self.models = db, projects, models
        self.mcp_pool, self.session_ttl = mcp_pool, session_ttl
        self.waiting = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lf-chat-wait")
        self.working = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lf-chat")

    def close(self) -> None:
        """Takes no new work; what is queued (event-log writes) still runs."""
        self.waiting.shutdown(wait=False)
        self.working.shutdown(wait=False)

    async def offload(self, work: Callable[[], T]) -> T:
        """Runs blocking work of a turn on a working thread."""
        return await _run(self.working, work)

    def later(self, work: Callable[[], object]) -> None:
        """Runs `work` on a working thread without waiting for it (an event-log write)."""
        self.working.submit(work)


async def _run(pool: Executor, work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, work)


@dataclass(frozen=True)
class Reply:
    """A whole answer: OpenAI's body, the session it was kept in, and the inference event's
    write, to call once the response is out."""

    body: dict[str, Any]
    session_id: str | None
    log: Callable[[], None]
    fitted: Fitted | None = None
    """What was left out of the conversation to fit the model's window."""


@dataclass(frozen=True)
class Streamed:
    """A stream whose first delta has come: its session and its batches of chunks."""

    session_id: str | None
    chunks: AsyncGenerator[Chunks, None]
    fitted: Fitted | None = None


async def complete(
    chat: ChatServices,
    *,
    ref: ProjectRef,
    request: ChatRequest,
    session_id: str | None = None,
    stateless: bool = False,
) -> Reply:
    """The whole answer to `request` in the session `session_id` (a new one when None; none
    when `stateless`)."""
    turn = await _Turn.begin(chat, ref, request, session_id=session_id, stateless=stateless)
    try:
        prepared, tools = await turn.prepare()
        provider = prepared.provider

        async def generate(generation: Generation) -> Completion:
            return await chat.offload(partial(provider.complete, generation))

        talk = await rounds.complete(prepared, tools, generate=generate, timeline=turn.timeline)
        answer = responses.answer(prepared, talk)
        turn.timeline.mark("llm_inference_complete")
        await turn.store(answer.kept)
    except BaseException as exc:
        await turn.failed(exc)
        raise
    await turn.release()
    turn.timeline.mark("response_generated")
    log = partial(
        turn.log.write,
        answer=answer.choice["message"]["content"],
        finish_reason=answer.choice["finish_reason"],
        usage=answer.body["usage"],
        tool_calls=answer.tool_calls,
    )
    return Reply(answer.body, turn.session_id, log, prepared.fitted)


async def stream(
    chat: ChatServices,
    *,
    ref: ProjectRef,
    request: ChatRequest,
    session_id: str | None = None,
    stateless: bool = False,
) -> Streamed:
    """The answer to `request` as it is made, once its first delta has come (tool rounds
    without text come before it); sessions as in `complete`."""
    turn = await _Turn.begin(
        chat, ref, request, session_id=session_id, stateless=stateless, stream=True
    )
    try:
        prepared, tools = await turn.prepare()
        deltas = redacted(
            rounds.stream(prepared, tools, timeline=turn.timeline), chat.projects.policy
        )
        try:
            first = await anext(deltas)
        except BaseException:
            await deltas.aclose()
            raise
        turn.timeline.mark("llm_first_token")
    except BaseException as exc:
        await turn.failed(exc)
        raise
    chunks = _batches(turn, responses.Stream(prepared), first, deltas)
    return Streamed(turn.session_id, chunks, prepared.fitted)


class _Turn:
    """One request's turn: its hold on the session, what it adds there, and its event."""

    def __init__(
        self, chat: ChatServices, ref: ProjectRef, request: ChatRequest, *, stream: bool
    ) -> None:
        self.chat, self.ref, self.request = chat, ref, request
        self.log = InferenceLog(chat.db, chat.projects, ref, request, stream=stream)
        self.timeline = self.log.timeline
        self.key = Key(chat.db, ref.namespace, ref.project)
        self.session_id: str | None = None
        self.added = new_turn(request.messages)
        self.lease = Lease(self.key.turn(None))
        self.history: list[Message] = []

    @classmethod
    async def begin(
        cls,
        chat: ChatServices,
        ref: ProjectRef,
        request: ChatRequest,
        *,
        session_id: str | None,
        stateless: bool,
        stream: bool = False,
    ) -> _Turn:
        """The turn, its session opened and taken; it is given back once the answer is stored
        (or the stream ends). A stateless request takes no thread for it."""
        turn = cls(chat, ref, request, stream=stream)
        if stateless:
            turn.history = turn.lease.take()
            return turn
        turn.session_id = turn.log.session_id = await asyncio.to_thread(
            sessions.open_session,
            chat.db,
            namespace=ref.namespace,
            project=ref.project,
            session_id=session_id,
            ttl=chat.session_ttl,
        )
        turn.lease = Lease(turn.key.turn(turn.session_id))
        turn.history = await _run(chat.waiting, turn.lease.take)
        return turn

    async def prepare(self) -> tuple[Prepared, Toolbox]:
        prepared = await prepare(
            projects=self.chat.projects,
            models=self.chat.models,
            ref=self.ref,
            request=self.request,
            history=self.history,
            offload=self.chat.offload,
            timeline=self.timeline,
        )
        self.log.model, self.log.fitted = prepared.model, prepared.fitted
        tools = await toolbox(prepared, self.chat.mcp_pool, timeline=self.timeline)
        self.timeline.mark("llm_inference_start", provider=prepared.model.provider)
        return prepared, tools

    async def store(self, answer: str | None) -> None:
        """Keep the turn in the session; None while the client has tool calls to run."""
        if self.added and answer is not None and self.session_id is not None:
            stored, messages = self.session_id, [*self.added, Message("assistant", answer)]
            await self.chat.offload(lambda: self.key.store(stored, messages))

    async def release(self) -> None:
        """Give the session's turn back (a database write, on a thread; none when stateless)."""
        if self.session_id is None:
            self.lease.give_back()
        else:
            await _run(self.chat.waiting, self.lease.give_back)

    async def failed(self, exc: BaseException) -> None:
        """Before the response began: the turn given back, a failure of ours logged."""
        await self.release()
        if isinstance(exc, LfError):
            self.chat.later(partial(self.log.write, error=exc))


async def _batches(
    turn: _Turn,
    run: responses.Stream,
    first: Delta,
    deltas: AsyncGenerator[Delta, None],
) -> AsyncGenerator[Chunks, None]:
    """The chunks of a stream whose first delta has come. Everything runs on the event loop:
    a task reads the provider into a queue, and each batch carries every chunk that has come
    since the last one (one per token when tokens come one at a time, far fewer than one per
    token when a fast model server sends a burst: each write costs more than the chunk
    itself). The last batch carries the finish chunk (or the error) and ends the stream, once
    the turn is stored and the session given back, so a client that sends its next turn on
    the end finds this one in the history. When the client goes away this generator is
    cancelled or closed: the reader and the provider's stream are closed (which stops the
    generation), the session is given back, and the turn is not stored (a session never keeps
    half an answer). The inference event is written on a thread at the end, `cancelled` when
    the client left.
    """
    queue: asyncio.Queue[Delta | Exception | None] = asyncio.Queue(maxsize=READ_AHEAD)

    async def read() -> None:
        try:
            async with contextlib.aclosing(deltas):
                async for delta in deltas:
                    await queue.put(delta)
            await queue.put(None)
        except Exception as exc:  # raised again on the writing side
            await queue.put(exc)

    reader = asyncio.create_task(read())
    outcome: Callable[[], None] | None = None
    last: list[dict[str, Any]] = []
    try:
        yield run.feed(first), False
        while not last:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            chunks: list[dict[str, Any]] = []
            for item in merged(items):
                if isinstance(item, Exception):
                    if chunks:
                        yield chunks, False  # what came before the failure
                    raise item
                if item is None:
                    last = run.end()
                else:
                    chunks += run.feed(item)
            if chunks:
                yield chunks, False
        turn.timeline.mark("llm_inference_complete")
        # The whole answer is out: a client leaving now must not stop the store half-way
        # (the turn is kept, and the event says success).
        with anyio.CancelScope(shield=True):
            await turn.store(run.kept)
    except Exception as exc:  # the stream has begun: report it, then end the stream
        error = exc if isinstance(exc, LfError) else LfError(f"{type(exc).__name__}: {exc}")
        outcome = partial(turn.log.write, answer=run.answer, error=error)
        last = [responses.error_chunk(error)]
    else:
        outcome = partial(
            turn.log.write,
            answer=run.answer,
            finish_reason=run.finish_reason,
            usage=responses.usage_json(run.usage),
            tool_calls=run.tool_calls,
        )
    finally:
        # Shielded: when the client left, this runs inside a cancelled scope.
        with anyio.CancelScope(shield=True):
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await turn.release()
        turn.timeline.mark("response_generated")
        # outcome is None when the client went away before the end
        turn.chat.later(outcome or partial(turn.log.write, answer=run.answer, status="cancelled"))
    yield last, True
