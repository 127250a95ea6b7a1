"""The `inference` event of a completion, as the event log keeps it."""

from __future__ import annotations

from collections.abc import Sequence

from llamafarm import events
from llamafarm.chat.fitting import Fitted
from llamafarm.chat.prepare import ChatRequest
from llamafarm.chat.providers.base import ToolCall
from llamafarm.chat.providers.wire import tool_call_json
from llamafarm.config.models import ModelConfig
from llamafarm.errors import LfError
from llamafarm.events import Timeline
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.state import StateDB


class InferenceLog:
    """The `inference` event of one completion: marks on its timeline as it goes, written by
    `write` once the response is out."""

    def __init__(
        self,
        db: StateDB,
        projects: ProjectStore,
        ref: ProjectRef,
        request: ChatRequest,
        *,
        stream: bool,
    ) -> None:
        self.db, self.projects, self.ref = db, projects, ref
        self.request, self.stream = request, stream
        self.timeline = Timeline()
        self.timeline.mark("request_received", stream=stream, messages=len(request.messages))
        self.model: ModelConfig | None = None
        self.session_id: str | None = None
        self.fitted: Fitted | None = None

    def write(
        self,
        *,
        answer: str | None = None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
        error: LfError | None = None,
        status: str = "success",
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        """Store the event; `usage` as in the response (`prompt_tokens`, ...)."""
        if not self.projects.exists(self.ref.namespace, self.ref.project):
            return  # never was, or deleted meanwhile: no project to log it under
        tokens = usage
        model = self.model.model if self.model else self.request.model
        status = "error" if error is not None else status
        summary = {
            "model": model,
            "tokens": tokens["total_tokens"] if tokens else None,
            "duration_ms": self.timeline.elapsed_ms(),
            "status": status,
            "error": error.detail if error is not None else None,
        }
        data = {
            **summary,
            "model_name": self.model.name if self.model else self.request.model,
            "provider": self.model.provider if self.model else None,
            "stream": self.stream,
            "session_id": self.session_id,
            "context": _context(self.fitted),
            "messages": [{"role": m.role, "content": m.content} for m in self.request.messages],
            "response": {"content": answer, "finish_reason": finish_reason}
            | ({"tool_calls": [tool_call_json(c) for c in tool_calls]} if tool_calls else {}),
            "tokens": None
            if tokens is None
            else {
                "prompt": tokens["prompt_tokens"],
                "completion": tokens["completion_tokens"],
                "total": tokens["total_tokens"],
            },
        }
        events.record(
            self.db,
            kind=events.INFERENCE,
            namespace=self.ref.namespace,
            project=self.ref.project,
            timeline=self.timeline,
            summary=summary,
            data=data,
            policy=self.projects.policy,
        )


def _context(fitted: Fitted | None) -> dict[str, int | None] | None:
    """How the conversation was fitted to the model's window; None when it was not (the
    window is not known, or the request failed before)."""
    return None if fitted is None or fitted.window is None else fitted.summary()
