"""Chat API: OpenAI-compatible completions, sessions, and the project's models. A completion
is parsed here, answered by the chat turn (`chat/turn.py`) and rendered: JSON, or an SSE
stream (`api/sse.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from llamafarm.api.chat_request import ChatCompletionRequest
from llamafarm.api.deps import ChatServicesDep, ProjectRefDep, ProjectStoreDep, StateDBDep
from llamafarm.api.errors import errors
from llamafarm.api.schemas.chat import (
    ChatHistory,
    ChatModelList,
    HistoryMessage,
    SessionDeleted,
    SessionList,
    SessionPublic,
    SessionsDeleted,
)
from llamafarm.api.schemas.completions import STREAM_EVENT, ChatCompletion
from llamafarm.api.sse import EventStream
from llamafarm.chat import sessions, turn
from llamafarm.chat.fitting import Fitted

router = APIRouter(
    prefix="/projects/{namespace}/{project}",
    tags=["chat"],
    responses=errors(400, 404, 409, 413, 422, 502, 503, 504),
)

SessionHeader = Annotated[str | None, Header(alias="X-Session-ID")]
NoSessionHeader = Annotated[str | None, Header(alias="X-No-Session")]
CONTEXT_DROPPED = "X-LF-Context-Dropped"


@router.post(
    "/chat/completions",
    operation_id="chat_completions",
    summary="Chat (OpenAI-compatible)",
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "A `chat.completion`, or with `stream` true server-sent events: "
            "each `data:` line one `chat.completion.chunk` as JSON (an `error` object if the "
            "provider fails mid-answer), then `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": STREAM_EVENT}},
        }
    },
)
async def completions(
    body: ChatCompletionRequest,
    ref: ProjectRefDep,
    chat: ChatServicesDep,
    session_id: SessionHeader = None,
    no_session: NoSessionHeader = None,
) -> Any:
    request, stateless = body.plain(), no_session is not None
    if body.stream:
        streamed = await turn.stream(
            chat, ref=ref, request=request, session_id=session_id, stateless=stateless
        )
        headers = _session(streamed.session_id) | _dropped(streamed.fitted)
        return EventStream(streamed.chunks, headers=headers)
    reply = await turn.complete(
        chat, ref=ref, request=request, session_id=session_id, stateless=stateless
    )
    # Checked against the model on the way out; the JSON is the dump, in the model's order.
    answer = ChatCompletion.model_validate(reply.body).model_dump(mode="json")
    headers = _session(reply.session_id) | _dropped(reply.fitted)
    return JSONResponse(answer, headers=headers, background=BackgroundTask(reply.log))


def _session(session_id: str | None) -> dict[str, str]:
    return {} if session_id is None else {"X-Session-ID": session_id}


def _dropped(fitted: Fitted | None) -> dict[str, str]:
    """`X-LF-Context-Dropped: turns=N; chunks=M` when the conversation was cut to fit the
    model's window."""
    return {CONTEXT_DROPPED: fitted.header()} if fitted is not None and fitted.dropped else {}


@router.get(
    "/chat/sessions",
    operation_id="chat_sessions_list",
    summary="A project's chat sessions",
    description="The live sessions, the most recently used first (at most 100): id, title (the "
    "start of the first user message), message count, created_at and last_used_at (Unix "
    "seconds).",
)
def list_sessions(ref: ProjectRefDep, db: StateDBDep) -> SessionList:
    found = sessions.list_sessions(db, namespace=ref.namespace, project=ref.project)
    listed = [SessionPublic(**vars(s)) for s in found]
    return SessionList(total=len(listed), sessions=listed)


@router.get(
    "/chat/sessions/{session_id}/history",
    operation_id="chat_history",
    summary="A chat session's messages",
)
def history(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> ChatHistory:
    messages = sessions.history(
        db, namespace=ref.namespace, project=ref.project, session_id=session_id
    )
    return ChatHistory(messages=[HistoryMessage(role=m.role, content=m.content) for m in messages])


@router.delete(
    "/chat/sessions/{session_id}", operation_id="chat_session_delete", summary="Delete a session"
)
def delete_session(session_id: str, ref: ProjectRefDep, db: StateDBDep) -> SessionDeleted:
    sessions.delete_session(db, namespace=ref.namespace, project=ref.project, session_id=session_id)
    return SessionDeleted(message=f"Session {session_id} deleted")


@router.delete("/chat/sessions", operation_id="chat_sessions_delete", summary="Delete all sessions")
def delete_sessions(ref: ProjectRefDep, db: StateDBDep) -> SessionsDeleted:
    count = sessions.delete_all_sessions(db, namespace=ref.namespace, project=ref.project)
    return SessionsDeleted(message=f"Deleted {count} session(s)", count=count)


@router.get(
    "/models",
    operation_id="models_list",
    tags=["mcp"],
    summary="The project's models",
    description="The chat models of the project's runtime: name, provider, model, base_url "
    "and which one is the default.",
)
def list_models(ref: ProjectRefDep, projects: ProjectStoreDep) -> ChatModelList:
    return ChatModelList.of(projects.load(ref.namespace, ref.project).runtime)
