"""Chat API: OpenAI-compatible completions, sessions, and the project's models."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import anyio
import orjson
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from llamafarm.api.deps import ChatServicesDep, ProjectRefDep, ProjectStoreDep, StateDBDep
from llamafarm.api.errors import errors
from llamafarm.api.schemas.chat import (
    ChatHistory,
    ChatModelList,
    SessionDeleted,
    SessionsDeleted,
)
from llamafarm.chat import service, sessions
from llamafarm.chat.providers.base import Completion, Delta, Generation, Message, ToolCall
from llamafarm.config.policy import ConfigPolicy
from llamafarm.errors import LfError
from llamafarm.state import StateDB

router = APIRouter(
    prefix="/projects/{namespace}/{project}",
    tags=["chat"],
    responses=errors(400, 404, 409, 413, 422, 502, 503, 504),
)


FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
MAX_MESSAGES = 1024
"""Messages of one request: a long agent loop fits; a list of a million tiny ones does not."""
MAX_CHARACTERS = 1_000_000
"""Characters of all messages of one request (contents and tool-call arguments), ~4x the
largest context a local model takes; the JSON body limit alone would let escapes multiply it."""


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    """A tool call of an earlier assistant message, as the client received it."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """OpenAI's message: `content` a string or a list of text parts; `developer` is `system`;
    an assistant's `tool_calls` (its content may be null) and `tool` results answering them."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required")
        return self

    def characters(self) -> int:
        """Characters of its content and tool-call arguments."""
        content = self.content or ""
        size = len(content) if isinstance(content, str) else sum(len(p.text) for p in content)
        return size + sum(len(c.function.arguments) for c in self.tool_calls or ())

    def plain(self) -> Message:
        content = self.content or ""
        text = content if isinstance(content, str) else "".join(p.text for p in content)
        return Message(
            role="system" if self.role == "developer" else self.role,
            content=text,
            tool_calls=tuple(
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in self.tool_calls or ()
            ),
            tool_call_id=self.tool_call_id if self.role == "tool" else None,
        )


INT64 = range(-(2**63), 2**63)


def _fits_json(value: Any) -> None:
    """Free-form JSON of a tool goes on to the model server, and JSON encoders (orjson's,
    llama.cpp's) stop at 64-bit integers: a bigger one was a 500 (tests/api/test_fuzz.py)."""
    if isinstance(value, dict):
        for item in value.values():
            _fits_json(item)
    elif isinstance(value, list):
        for item in value:
            _fits_json(item)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        raise ValueError("integers must fit in 64 bits")


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _encodable(self) -> FunctionSpec:
        _fits_json([self.parameters, self.model_extra])
        return self


class ToolSpec(BaseModel):
    """One of the client's own tools; the model's calls of it come back to the client."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionSpec

    @model_validator(mode="after")
    def _encodable(self) -> ToolSpec:
        _fits_json(self.model_extra)
        return self


class NamedFunction(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(BaseModel):
    """OpenAI's request plus llamafarm's RAG and thinking fields; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1, le=1_000_000)
    rag_enabled: bool | None = None
    database: str | None = Field(default=None, min_length=1)
    rag_top_k: int | None = Field(default=None, ge=1, le=100)
    rag_score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    rag_queries: list[Annotated[str, Field(max_length=10_000)]] | None = Field(
        default=None, max_length=8
    )
    think: bool = False
    thinking_budget: int | None = Field(default=None, ge=1, le=32_768)
    variables: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolSpec] = Field(default_factory=list, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    @model_validator(mode="after")
    def _tool_results_answer_calls(self) -> ChatCompletionRequest:
        called: set[str] = set()
        characters = 0
        for message in self.messages:
            characters += message.characters()
            called.update(call.id for call in message.tool_calls or ())
            if message.role == "tool" and message.tool_call_id not in called:
                raise ValueError(
                    f"the tool message for {message.tool_call_id!r} answers no tool call "
                    "of an earlier assistant message"
                )
        if characters > MAX_CHARACTERS:
            raise ValueError(
                f"messages hold {characters} characters; at most {MAX_CHARACTERS} are accepted"
            )
        names = [tool.function.name for tool in self.tools]
        if len(names) != len(set(names)):
            raise ValueError("tools: each function name must be unique")
        return self


SessionHeader = Annotated[str | None, Header(alias="X-Session-ID")]
NoSessionHeader = Annotated[str | None, Header(alias="X-No-Session")]


@router.post(
    "/chat/completions",
    operation_id="chat_completions",
    summary="Chat (OpenAI-compatible)",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def completions(
    body: ChatCompletionRequest,
    ref: ProjectRefDep,
    services: ChatServicesDep,
    session_id: SessionHeader = None,
    no_session: NoSessionHeader = None,
) -> Any:
    projects, models, db = services.projects, services.models, services.db
    request = service.ChatRequest(
        messages=[m.plain() for m in body.messages],
        **body.model_dump(exclude={"messages", "stream", "tools", "tool_choice"}),
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools],
        tool_choice=(
            body.tool_choice.model_dump()
            if isinstance(body.tool_choice, NamedToolChoice)
            else body.tool_choice
        ),
    )
    log = service.InferenceLog(db, projects, ref, request, stream=body.stream)
    key = Key(db, ref.namespace, ref.project)
    if no_session is None:
        session_id = await asyncio.to_thread(
            sessions.open_session,
            db,
            namespace=ref.namespace,
            project=ref.project,
            session_id=session_id,
            ttl=services.settings.session_ttl,
        )
        headers = {"X-Session-ID": session_id}
    else:
        session_id, headers = None, {}
    log.session_id = session_id
    turn = new_turn(request.messages)

    async def store(answer: str | None) -> None:
        """Keep the turn in the session; None while the client has tool calls to run. A
        stateless request takes no thread for it."""
        if turn and answer is not None and session_id is not None:
            stored, messages = session_id, [*turn, Message("assistant", answer)]
            await _run(_WORKING, lambda: key.store(stored, messages))

    # The session's turn is taken before the model is chosen and the context retrieved, so a
    # bad request is a plain HTTP error even when streaming; it is given back once the answer
    # is stored (or the stream ends). Waiting for it uses its own threads: waiters must never
    # take the threads the turn they wait for needs to finish.
    lease = Lease(key.turn(session_id))
    history = lease.take() if session_id is None else await _run(_WAITING, lease.take)
    try:
        prepared = await service.prepare(
            projects=projects,
            models=models,
            ref=ref,
            request=request,
            history=history,
            offload=_offload,
            timeline=log.timeline,
        )
        log.model = prepared.model
        toolbox = await service.toolbox(prepared, services.mcp_pool, timeline=log.timeline)
        log.timeline.mark("llm_inference_start", provider=prepared.model.provider)
        if body.stream:
            # The first delta is awaited before the response begins, so a provider that is
            # down, slow or broken answers with an HTTP error status, not an event in a 200
            # (tool rounds without text come before it).
            deltas = _redacted(
                service.stream(prepared, toolbox, timeline=log.timeline), projects.policy
            )
            try:
                first = await anext(deltas)
            except BaseException:
                await deltas.aclose()
                raise
            log.timeline.mark("llm_first_token")
        else:
            provider = prepared.provider

            async def generate(generation: Generation) -> Completion:
                return await _run(_WORKING, partial(provider.complete, generation))

            answer = await service.complete(
                prepared, toolbox, generate=generate, timeline=log.timeline
            )
            log.timeline.mark("llm_inference_complete")
            await store(answer.kept)
    except BaseException as exc:
        await _release(lease, session_id)
        if isinstance(exc, LfError):
            _later(partial(log.write, error=exc))
        raise
    if not body.stream:
        await _release(lease, session_id)
        log.timeline.mark("response_generated")
        written = partial(
            log.write,
            answer=answer.choice["message"]["content"],
            finish_reason=answer.choice["finish_reason"],
            usage=answer.body["usage"],
            tool_calls=answer.tool_calls,
        )
        return JSONResponse(answer.body, headers=headers, background=BackgroundTask(written))

    return EventStream(
        _events(
            service.Stream(prepared),
            first,
            deltas,
            store,
            lambda: _release(lease, session_id),
            log,
        ),
        headers={**headers, "Cache-Control": "no-cache"},
    )


def _redacted(
    deltas: AsyncGenerator[Delta, None], policy: ConfigPolicy
) -> AsyncGenerator[Delta, None]:
    """The deltas with the policy's secrets redacted across them: a model spelling a secret
    out over several deltas (each its own SSE frame) got past RedactSecrets, which sees one
    frame at a time."""
    return deltas if not policy.has_secrets else _held_back(deltas, policy)


async def _held_back(
    deltas: AsyncGenerator[Delta, None], policy: ConfigPolicy
) -> AsyncGenerator[Delta, None]:
    """Text that may be the start of a secret waits for the next delta."""
    held = ""
    async with aclosing(deltas):
        async for delta in deltas:
            if delta.finish_reason is None and delta.usage is None and not delta.tool_calls:
                content, held = policy.redact_part(held + delta.content)
                if content:
                    yield Delta(content=content)
                continue
            yield replace(delta, content=policy.redact(held + delta.content))
            held = ""
    if held:
        yield Delta(content=policy.redact(held))


def _later(work: Callable[[], object]) -> None:
    """Run `work` on a chat thread without waiting for it (an event log write)."""
    _WORKING.submit(work)


READ_AHEAD = 256
"""Deltas read from the provider ahead of the client; a slower client holds the provider back."""

_WAITING = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lf-chat-wait")
_WORKING = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lf-chat")
"""Chat's threads, apart from the server's default pool and from each other."""

T = TypeVar("T")


async def _run(pool: ThreadPoolExecutor, work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, work)


async def _offload(work: Callable[[], T]) -> T:
    return await _run(_WORKING, work)


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


async def _release(lease: Lease, session_id: str | None) -> None:
    """Give the session's turn back (a database write, on a thread; none when stateless)."""
    if session_id is None:
        lease.give_back()
    else:
        await _run(_WAITING, lease.give_back)


async def _events(
    run: service.Stream,
    first: Delta,
    deltas: AsyncGenerator[Delta, None],
    store: Callable[[str | None], Awaitable[None]],
    release: Callable[[], Awaitable[None]],
    log: service.InferenceLog,
) -> AsyncGenerator[bytes, None]:
    """SSE frames of a stream whose first delta has come. Everything runs on the event loop:
    a task reads the provider into a queue, and each write to the client carries every frame
    that has come since the last one (one write per token when tokens come one at a time, far
    fewer than one per token when a fast model server sends a burst: each write costs more
    than the frame itself). The last write carries the finish chunk (or the error) and
    `[DONE]`, once the turn is stored and the session given back, so a client that sends its
    next turn on `[DONE]` finds this one in the history. When the client goes away this
    generator is cancelled or closed: the reader and the provider's stream are closed (which
    stops the generation), the session is given back, and the turn is not stored (a session
    never keeps half an answer). The inference event is written on a thread at the end,
    `cancelled` when the client left.
    """
    queue: asyncio.Queue[Delta | Exception | None] = asyncio.Queue(maxsize=READ_AHEAD)

    async def read() -> None:
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    await queue.put(delta)
            await queue.put(None)
        except Exception as exc:  # raised again on the writing side
            await queue.put(exc)

    reader = asyncio.create_task(read())
    outcome: Callable[[], None] | None = None
    last: list[bytes] = []
    try:
        yield b"".join(_frame(chunk) for chunk in run.feed(first))
        while not last:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            frames: list[bytes] = []
            for item in _merged(items):
                if isinstance(item, Exception):
                    if frames:
                        yield b"".join(frames)  # what came before the failure
                    raise item
                if item is None:
                    last = [_frame(chunk) for chunk in run.end()]
                else:
                    frames += [_frame(chunk) for chunk in run.feed(item)]
            if frames:
                yield b"".join(frames)
        log.timeline.mark("llm_inference_complete")
        # The whole answer is out: a client leaving now must not stop the store half-way
        # (the turn is kept, and the event says success).
        with anyio.CancelScope(shield=True):
            await store(run.kept)
    except Exception as exc:  # the stream has begun: report it, then end the stream
        error = exc if isinstance(exc, LfError) else LfError(f"{type(exc).__name__}: {exc}")
        outcome = partial(log.write, answer=run.answer, error=error)
        last = [_frame(service.error_chunk(error))]
    else:
        outcome = partial(
            log.write,
            answer=run.answer,
            finish_reason=run.finish_reason,
            usage=service.usage_json(run.usage),
            tool_calls=run.tool_calls,
        )
    finally:
        # Shielded: when the client left, this runs inside a cancelled scope.
        with anyio.CancelScope(shield=True):
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await release()
        log.timeline.mark("response_generated")
        # outcome is None when the client went away before the end
        _later(outcome or partial(log.write, answer=run.answer, status="cancelled"))
    yield b"".join([*last, DONE])


DONE = b"data: [DONE]\n\n"


def _merged(items: list[Delta | Exception | None]) -> list[Delta | Exception | None]:
    """The queued items with each run of plain text deltas joined into one: a burst from a
    fast model server becomes one chunk instead of one per token (clients take any split of
    the text; each chunk costs the server and the client more than its text)."""
    merged: list[Delta | Exception | None] = []
    text: list[str] = []
    for item in items:
        if (
            isinstance(item, Delta)
            and item.finish_reason is None
            and item.usage is None
            and not item.tool_calls
        ):
            text.append(item.content)
            continue
        if text:
            merged.append(Delta(content="".join(text)))
            text = []
        merged.append(item)
    if text:
        merged.append(Delta(content="".join(text)))
    return merged


class EventStream(StreamingResponse):
    """An SSE response of `_events`' frames. Starlette's StreamingResponse sends the first
    frame from a task it starts (a loop iteration of other streams' work later, under load),
    sends the end of the body as a write of its own, and leaves a generator whose client went
    away mid `send` suspended, to be finalised by the garbage collector whenever that comes,
    holding the model and the session until then. Here the start and the first frame go out
    from the request's own task, the frame with `[DONE]` ends the body, a task of its own
    watches for the client going away, and the generator is closed however the response
    ends."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        super().__init__(frames, headers=headers)
        self.frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # The generator is started first: from then on its cleanup runs however this ends
            # (one closed before it began would never give the provider or the session back).
            first = await anext(self.frames)
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            with anyio.CancelScope() as streaming:
                watch = asyncio.create_task(self._watch(receive, streaming))
                try:
                    ended = await _body(send, first)
                    async for frame in self.frames:
                        ended = await _body(send, frame)
                    if not ended:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    watch.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.frames.aclose()

    async def _watch(self, receive: Receive, streaming: anyio.CancelScope) -> None:
        """Cancels the streaming when the client goes away (the write may never fail)."""
        with contextlib.suppress(Exception):  # a receive that fails: as good as gone
            await self.listen_for_disconnect(receive)
        streaming.cancel()


async def _body(send: Send, frame: bytes) -> bool:
    """Sends `frame`; the one with `[DONE]` ends the body (True)."""
    last = frame.endswith(DONE)
    await send({"type": "http.response.body", "body": frame, "more_body": not last})
    return last


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@router.get(
    "/chat/sessions/{session_id}/history",
    operation_id="chat_history",
    summary="A chat session's messages",
)
def history(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> ChatHistory:
    messages = sessions.history(
        db, namespace=ref.namespace, project=ref.project, session_id=session_id
    )
    return ChatHistory.model_validate(sessions.history_response(messages))


@router.delete(
    "/chat/sessions/{session_id}", operation_id="chat_session_delete", summary="Delete a session"
)
def delete_session(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> SessionDeleted:
    deleted = sessions.delete_session(
        db, namespace=ref.namespace, project=ref.project, session_id=session_id
    )
    return SessionDeleted.model_validate(deleted)


@router.delete("/chat/sessions", operation_id="chat_sessions_delete", summary="Delete all sessions")
def delete_sessions(ref: ProjectRefDep, db: StateDBDep) -> SessionsDeleted:
    deleted = sessions.delete_all_sessions(db, namespace=ref.namespace, project=ref.project)
    return SessionsDeleted.model_validate(deleted)


@router.get(
    "/models",
    operation_id="models_list",
    tags=["mcp"],
    summary="The project's models",
    description="The chat models of the project's runtime: name, provider, model, base_url "
    "and which one is the default.",
)
def list_models(ref: ProjectRefDep, projects: ProjectStoreDep) -> ChatModelList:
    return ChatModelList.model_validate(
        service.list_models(projects.load(ref.namespace, ref.project))
    )
