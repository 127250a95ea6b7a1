"""Chat API: OpenAI-compatible completions, sessions, and the project's models."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from llamafarm.api.deps import (
    ModelCacheDep,
    ProjectRefDep,
    ProjectStoreDep,
    SettingsDep,
    StateDBDep,
)
from llamafarm.chat import service, sessions
from llamafarm.chat.providers.base import Message
from llamafarm.errors import LfError
from llamafarm.state import StateDB

router = APIRouter(prefix="/projects/{namespace}/{project}", tags=["chat"])


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """OpenAI's message: `content` a string or a list of text parts; `developer` is `system`."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> Message:
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return Message(role="system" if self.role == "developer" else self.role, content=text)


class ChatCompletionRequest(BaseModel):
    """OpenAI's request plus llamafarm's RAG and thinking fields; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    rag_enabled: bool | None = None
    database: str | None = Field(default=None, min_length=1)
    rag_top_k: int | None = Field(default=None, ge=1, le=100)
    rag_score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    rag_queries: list[str] | None = Field(default=None, max_length=8)
    think: bool = False
    thinking_budget: int | None = Field(default=None, ge=1, le=32_768)
    variables: dict[str, Any] = Field(default_factory=dict)


SessionHeader = Annotated[str | None, Header(alias="X-Session-ID")]
NoSessionHeader = Annotated[str | None, Header(alias="X-No-Session")]


@router.post(
    "/chat/completions", operation_id="chat_completions", summary="Chat (OpenAI-compatible)"
)
async def completions(
    body: ChatCompletionRequest,
    ref: ProjectRefDep,
    projects: ProjectStoreDep,
    models: ModelCacheDep,
    db: StateDBDep,
    settings: SettingsDep,
    session_id: SessionHeader = None,
    no_session: NoSessionHeader = None,
) -> Any:
    request = service.ChatRequest(
        messages=[m.plain() for m in body.messages],
        **body.model_dump(exclude={"messages", "stream"}),
    )
    key = Key(db, ref.namespace, ref.project)
    if no_session is None:
        session_id = await asyncio.to_thread(
            sessions.open_session,
            db,
            namespace=ref.namespace,
            project=ref.project,
            session_id=session_id,
            ttl=settings.session_ttl,
        )
        headers = {"X-Session-ID": session_id}
    else:
        session_id, headers = None, {}
    turn = new_turn(request.messages)
    # The session's turn is taken before the model is chosen and the context retrieved, so a
    # bad request is a plain HTTP error even when streaming; it is given back once the answer
    # is stored (or the stream ends). Waiting for it uses its own threads: waiters must never
    # take the threads the turn they wait for needs to finish.
    lease = Lease(key.turn(session_id))
    history = lease.take() if session_id is None else await _run(_WAITING, lease.take)
    try:
        prepared = await _run(
            _WORKING,
            lambda: service.prepare(
                projects=projects, models=models, ref=ref, request=request, history=history
            ),
        )
        if not body.stream:
            answer, text = await _run(_WORKING, lambda: service.complete(prepared))
            if turn:
                await _run(
                    _WORKING, lambda: key.store(session_id, [*turn, Message("assistant", text)])
                )
    except BaseException:
        await _run(_WORKING, lease.give_back)
        raise
    if not body.stream:
        await _run(_WORKING, lease.give_back)
        return JSONResponse(answer, headers=headers)

    def store(text: str) -> None:
        if turn:
            key.store(session_id, [*turn, Message("assistant", text)])

    return StreamingResponse(
        _events(prepared, store, lease),
        media_type="text/event-stream",
        headers={**headers, "Cache-Control": "no-cache"},
    )


_WAITING = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lf-chat-wait")
_WORKING = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lf-chat")
"""Chat's threads, apart from the server's default pool and from each other."""

T = TypeVar("T")


async def _run(pool: ThreadPoolExecutor, work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, work)


def new_turn(messages: Sequence[Message]) -> list[Message]:
    """What a request adds to its session: the messages after its last assistant one (a
    client that resends the whole conversation adds only its new question), without system
    messages. Empty when there is no user message: nothing is stored then."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    added = [m for m in messages[last + 1 :] if m.role != "system"]
    return added if any(m.role == "user" for m in added) else []


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
    """The sessions of one project; a None session id (stateless) makes each step a no-op."""

    db: StateDB
    namespace: str
    project: str

    def turn(self, session_id: str | None) -> AbstractContextManager[list[Message]]:
        if session_id is None:
            return nullcontext([])
        return sessions.turn(
            self.db, namespace=self.namespace, project=self.project, session_id=session_id
        )

    def store(self, session_id: str | None, messages: list[Message]) -> None:
        if session_id is not None:
            sessions.append(
                self.db,
                namespace=self.namespace,
                project=self.project,
                session_id=session_id,
                messages=messages,
            )


async def _events(
    prepared: service.Prepared, store: Callable[[str], None], lease: Lease
) -> AsyncIterator[str]:
    """SSE frames. The model runs on a thread that feeds this coroutine. When the client goes
    away the coroutine is cancelled: the session is given back at once (a later turn need not
    wait for a model that has gone quiet), the thread stops at the next delta and closes the
    provider's stream, and the turn is not stored (a session never keeps half an answer)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def put(item: dict[str, Any] | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        run = service.Stream(prepared)
        chunks = run.chunks()
        try:
            for chunk in chunks:
                if stop.is_set():
                    break
                put(chunk)
            else:
                if run.answer is not None and not stop.is_set():
                    store(run.answer)
        except LfError as exc:
            put(service.error_chunk(exc))
        except Exception as exc:  # the stream has begun: report it, then end the stream
            put(service.error_chunk(LfError(f"{type(exc).__name__}: {exc}")))
        finally:
            try:
                chunks.close()
                lease.give_back()
            finally:
                put(None)

    loop.run_in_executor(_WORKING, pump)
    try:
        while (item := await queue.get()) is not None:
            yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        stop.set()
        await _run(_WAITING, lease.give_back)


@router.get(
    "/chat/sessions/{session_id}/history",
    operation_id="chat_history",
    summary="A chat session's messages",
)
def history(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> dict[str, Any]:
    messages = sessions.history(
        db, namespace=ref.namespace, project=ref.project, session_id=session_id
    )
    return sessions.history_response(messages)


@router.delete(
    "/chat/sessions/{session_id}", operation_id="chat_session_delete", summary="Delete a session"
)
def delete_session(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> dict[str, Any]:
    return sessions.delete_session(
        db, namespace=ref.namespace, project=ref.project, session_id=session_id
    )


@router.delete("/chat/sessions", operation_id="chat_sessions_delete", summary="Delete all sessions")
def delete_sessions(ref: ProjectRefDep, db: StateDBDep) -> dict[str, Any]:
    return sessions.delete_all_sessions(db, namespace=ref.namespace, project=ref.project)


@router.get("/models", operation_id="models_list", tags=["mcp"], summary="The project's models")
def list_models(ref: ProjectRefDep, projects: ProjectStoreDep) -> dict[str, Any]:
    return service.list_models(projects.load(ref.namespace, ref.project))
