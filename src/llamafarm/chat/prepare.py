"""Preparing a completion: pick the model, retrieve context, assemble the prompt, open the tools.

Everything decided before the model runs ends up in one `Prepared`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar

from llamafarm.chat.cache import ChatModelCache
from llamafarm.chat.fitting import Fitted, fit
from llamafarm.chat.prompts import prompt_messages, render_all
from llamafarm.chat.providers.base import (
    Generation,
    Measure,
    Measuring,
    Message,
    Provider,
    ToolChoice,
)
from llamafarm.chat.providers.prompted import PromptedTools
from llamafarm.chat.tools import McpPool, Toolbox, open_toolbox
from llamafarm.config.models import McpServer, ModelConfig, ProjectConfig
from llamafarm.errors import BadRequest
from llamafarm.events import Timeline
from llamafarm.projects import ProjectRef, ProjectStore
from llamafarm.rag import service as rag
from llamafarm.rag.stores.base import Hit

T = TypeVar("T")


class Offload(Protocol):
    """Runs blocking work off the event loop (on a thread of the caller's choosing)."""

    def __call__(self, work: Callable[[], T], /) -> Awaitable[T]: ...


ANSWER_TOKENS = 512
THINKING_TOKENS = 1024
SOURCES_LIMIT = 10
"""Chunks in a stream's `sources` event when the request gives no `sources_limit`."""
PREVIEW = 300
"""Characters of a source's text in the response (the model sees all of it)."""


@dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[Message]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    rag_enabled: bool | None = None
    database: str | None = None
    rag_top_k: int | None = None
    rag_score_threshold: float | None = None
    rag_queries: Sequence[str] | None = None
    rag_retrieval_strategy: str | None = None
    include_sources: bool = False
    """Send the retrieved chunks first, in a `{"type": "sources"}` event of the stream."""
    sources_limit: int | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    n_ctx: int | None = None
    """The context a local model is loaded with; other providers get it in the body."""
    think: bool = False
    thinking_budget: int | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    tools: Sequence[Mapping[str, Any]] = ()
    """The client's own tools (OpenAI function specs): calls of them go back to the client."""
    tool_choice: ToolChoice | None = None


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the model runs."""

    model: ModelConfig
    provider: Provider
    generation: Generation
    sources: list[dict[str, Any]]
    think: bool
    servers: tuple[McpServer, ...] = ()
    """The MCP servers whose tools the model is offered."""
    sources_event: list[dict[str, Any]] | None = None
    """What a stream's `sources` event carries first; None: no event (not asked for, or RAG
    was off; an empty list says RAG ran and found nothing)."""
    client_tools: tuple[Mapping[str, Any], ...] = ()
    fitted: Fitted | None = None
    """How the conversation was fitted to the model's window (what was dropped)."""
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def pick_model(config: ProjectConfig, name: str | None) -> ModelConfig:
    models = config.runtime.model_list()
    if name is None:
        return config.runtime.default()
    for model in models:
        if model.name == name:
            return model
    known = ", ".join(m.name for m in models)
    raise BadRequest(f"Unknown model {name!r} (valid: {known})")


async def prepare(
    *,
    projects: ProjectStore,
    models: ChatModelCache,
    ref: ProjectRef,
    request: ChatRequest,
    history: Sequence[Message],
    offload: Offload,
    timeline: Timeline | None = None,
) -> Prepared:
    """Resolve the model, retrieve context, and build the conversation the model will see;
    retrieval is marked on `timeline`. What blocks, retrieval (embedding, the vector store)
    and making a model's provider the first time, goes to `offload`, off the event loop; the
    rest is quick and runs in place (the project's config is parsed once per version of its
    file)."""
    if not request.messages:
        raise BadRequest("messages must not be empty")
    config = projects.load(ref.namespace, ref.project)
    model = pick_model(config, request.model)
    rag_on = _rag_enabled(config, model, request)
    queries = _queries(request) if rag_on else []
    hits = (
        await offload(
            partial(_retrieve, projects, models, ref, _options(model, request), queries, timeline)
        )
        if queries
        else []
    )
    system = prompt_messages(config, model, request.variables)
    # A client that sends earlier assistant turns keeps its own history (as OpenAI clients
    # do); otherwise the session's history comes first.
    own_history = any(m.role == "assistant" for m in request.messages)
    talk = [*([] if own_history else history), *request.messages]
    provider = models.cached_provider(model)
    if provider is None:
        provider = await offload(partial(_made, models, model, timeline))
    fitting = partial(fitted, provider, model, request, system, talk, hits)
    # A local model's window and tokenizer are its server's: loading it blocks.
    fit = await offload(fitting) if isinstance(_inner(provider), Measuring) else fitting()
    if timeline is not None and fit.window is not None:
        timeline.mark("context_fitted", **fit.summary())
    hits = list(fit.hits)
    # A model that cannot take tools (its chat template has no place for them) is offered
    # none: neither the MCP servers' nor the client's.
    tools = provider.supports_tools
    return Prepared(
        model=model,
        provider=provider,
        generation=generation(model, request, fit.messages, tools=tools),
        sources=[source(hit) for hit in hits[: request.sources_limit]],
        think=request.think,
        servers=model_servers(config, model) if tools else (),
        client_tools=client_tools(model, request) if tools else (),
        sources_event=(
            [source_event(hit) for hit in hits[: request.sources_limit or SOURCES_LIMIT]]
            if request.include_sources and rag_on
            else None
        ),
        fitted=fit,
    )


def fitted(
    provider: Provider,
    model: ModelConfig,
    request: ChatRequest,
    system: list[Message],
    talk: list[Message],
    hits: list[Hit],
) -> Fitted:
    """The conversation fitted to the model's window (`chat/fitting.py`); as it is when the
    window is not known (a remote model without `context_window` or `n_ctx`)."""
    found = measure(provider, model, extra(model, request))
    if found is None:
        context_message = [Message("system", context(hits))] if hits else []
        return Fitted(messages=[*system, *context_message, *talk], hits=tuple(hits))
    return fit(
        system=system,
        conversation=talk,
        hits=hits,
        render=context,
        measure=found,
        answer_tokens=answer_tokens(request),
        rag_share=model.rag_context_share,
    )


def measure(provider: Provider, model: ModelConfig, extra: Mapping[str, object]) -> Measure | None:
    """The model's window and how to count its tokens: a local model's own (capped by its
    `context_window`); else `context_window` or an `n_ctx` it is sent, with an estimate."""
    inner = _inner(provider)
    if isinstance(inner, Measuring):
        own = inner.measure(extra)
        window = min(own.window, model.context_window or own.window)
        return replace(own, window=window)
    n_ctx = extra.get("n_ctx")
    sent = n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None
    remote = model.context_window or sent
    return None if remote is None else Measure(window=remote)


def _inner(provider: Provider) -> Provider:
    """The provider a wrapper (prompt-based tools) runs."""
    return provider.inner if isinstance(provider, PromptedTools) else provider


def generation(
    model: ModelConfig, request: ChatRequest, conversation: list[Message], *, tools: bool
) -> Generation:
    """What the model is asked: the conversation and the request's knobs (the answer's tokens
    plus the thinking budget when thinking is on)."""
    # Unset and not thinking: the provider's default for the model (the bundled one's is short);
    # the fitting still keeps room for ANSWER_TOKENS (at most half the window).
    unset = request.max_tokens is None and not request.think
    return Generation(
        messages=conversation,
        max_tokens=None if unset else answer_tokens(request),
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stop=request.stop,
        seed=request.seed,
        response_format=request.response_format,
        extra=extra(model, request),
        tool_choice=request.tool_choice if tools else None,
    )


def answer_tokens(request: ChatRequest) -> int:
    """The answer's tokens: `max_tokens` plus the thinking budget when thinking is on."""
    budget = (request.thinking_budget or THINKING_TOKENS) if request.think else 0
    return (request.max_tokens or ANSWER_TOKENS) + budget


def extra(model: ModelConfig, request: ChatRequest) -> dict[str, object]:
    """What goes to the provider as it is: `model_api_parameters`, then `extra_body` (which
    wins, as the OpenAI client's does), then the request's `n_ctx`."""
    body: dict[str, object] = {**model.model_api_parameters, **model.extra_body.body()}
    if request.n_ctx is not None:
        body["n_ctx"] = request.n_ctx
    return body


def client_tools(model: ModelConfig, request: ChatRequest) -> tuple[Mapping[str, Any], ...]:
    """The client's tools and the model's configured `tools` (`{{var}}` in their texts filled
    from the request's variables); a client tool of the same name wins. Calls of either go back to
    the client."""
    mine = {tool["function"]["name"] for tool in request.tools}
    configured = [
        render_all(tool.openai(), request.variables)
        for tool in model.tools
        if tool.name not in mine
    ]
    return (*request.tools, *configured)


def _made(models: ChatModelCache, model: ModelConfig, timeline: Timeline | None) -> Provider:
    """The model's provider, with what it reads once (whether its template takes tools) read;
    a local model named by Hugging Face id is downloaded first when the server allows it
    (outside the cache's lock: a download must not hold up other models)."""
    if model.provider == "universal":
        models.first_use.fetch(model.model, timeline=timeline)
    provider = models.provider(model)
    _ = provider.supports_tools
    return provider


def model_servers(config: ProjectConfig, model: ModelConfig) -> tuple[McpServer, ...]:
    """The project's MCP servers the model may use: all, or those its `mcp_servers` names."""
    servers = config.mcp.servers if config.mcp else []
    if model.mcp_servers is None:
        return tuple(servers)
    return tuple(s for s in servers if s.name in model.mcp_servers)


async def toolbox(prepared: Prepared, pool: McpPool, *, timeline: Timeline) -> Toolbox:
    """The completion's tools; connecting the MCP servers may fail with a 503 naming one."""
    if not prepared.servers:
        return Toolbox(client=prepared.client_tools)
    tools = await open_toolbox(pool, prepared.servers, prepared.client_tools)
    timeline.mark("mcp_tools_ready", servers=len(prepared.servers), tools=len(tools.mcp))
    return tools


def context(hits: Sequence[Hit]) -> str:
    """The retrieved chunks as the model sees them: numbered, with source, page and score."""
    parts = [
        "Excerpts from the project's documents that may help answer. Use them when they are "
        "relevant and cite their source."
    ]
    for number, hit in enumerate(hits, start=1):
        where = str(hit.metadata.get("source", hit.metadata.get("document_id", "?")))
        page = hit.metadata.get("page")
        label = f"{where}, page {page}" if page is not None else where
        parts.append(f"[{number}] {label} (score {hit.score:.2f})\n{hit.text}")
    return "\n\n".join(parts)


def source(hit: Hit) -> dict[str, Any]:
    text = " ".join(hit.text.split())
    return {
        "content": text if len(text) <= PREVIEW else text[:PREVIEW] + "…",
        "source": hit.metadata.get("source"),
        "page": hit.metadata.get("page"),
        "score": round(hit.score, 6),
        "chunk_id": hit.id,
        "document_id": hit.metadata.get("document_id"),
    }


def source_event(hit: Hit) -> dict[str, Any]:
    """A chunk as LlamaFarm's `sources` event has it: all its text and metadata."""
    return {
        "content": hit.text,
        "source": hit.metadata.get("source", "unknown"),
        "score": round(hit.score, 6),
        "metadata": dict(hit.metadata),
    }


def _rag_enabled(config: ProjectConfig, model: ModelConfig, request: ChatRequest) -> bool:
    """Whether this request retrieves context: the request says, else the model's
    `rag_enabled`, else whether the project has databases."""
    has_databases = bool(config.rag and config.rag.databases)
    enabled = next(
        (v for v in (request.rag_enabled, model.rag_enabled) if v is not None), has_databases
    )
    if enabled and not has_databases:
        raise BadRequest("rag_enabled is true but the project has no RAG databases")
    return enabled


def _options(model: ModelConfig, request: ChatRequest) -> rag.QueryOptions:
    """The request's retrieval knobs; the database is the request's, else the model's
    `target_database`, else the project's default."""
    return rag.QueryOptions(
        database=request.database or model.target_database,
        top_k=request.rag_top_k,
        score_threshold=request.rag_score_threshold,
        retrieval_strategy=request.rag_retrieval_strategy,
    )


def _queries(request: ChatRequest) -> list[str]:
    """What to retrieve context for: the request's `rag_queries`, else its last user text."""
    if request.rag_queries:
        return list(request.rag_queries)
    last = next((m for m in reversed(request.messages) if m.role == "user"), None)
    if last is None or not last.content.strip():
        return []
    return [last.content]


def _retrieve(
    projects: ProjectStore,
    models: ChatModelCache,
    ref: ProjectRef,
    options: rag.QueryOptions,
    queries: list[str],
    timeline: Timeline | None,
) -> list[Hit]:
    timeline = timeline or Timeline()
    timeline.mark("rag_query_start", queries=len(queries), database=options.database)
    hits, _, _ = rag.search(
        projects=projects, models=models, ref=ref, queries=queries, options=options
    )
    hits = _distinct(hits)
    mean = sum(hit.score for hit in hits) / len(hits) if hits else None
    timeline.mark(
        "rag_retrieval_complete",
        chunks=len(hits),
        mean_score=None if mean is None else round(mean, 6),
    )
    return hits


def _distinct(hits: Sequence[Hit]) -> list[Hit]:
    """One hit per text: the same passage stored twice (two files, two datasets) counts once."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        key = " ".join(hit.text.split())
        if key not in seen:
            seen.add(key)
            kept.append(hit)
    return kept
