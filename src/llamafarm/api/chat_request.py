"""The body of a chat completion request: OpenAI's, plus llamafarm's RAG and thinking fields,
checked before anything runs (shapes, tool calls answered, and the size limits)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llamafarm.chat.prepare import ChatRequest
from llamafarm.chat.providers.base import Message, ToolCall

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


class JsonSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: the schema the answer must follow."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(default="response", min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _encodable(self) -> JsonSchemaFormat:
        _fits_json([self.schema_, self.model_extra])
        return self


class ResponseFormat(BaseModel):
    """`text` (the default), any JSON object, or JSON following a schema: a local model is
    held to it by a llama.cpp grammar, a server gets the field as it is."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given with type json_schema, and only then")
        return self

    def body(self) -> dict[str, Any] | None:
        """As the provider sends it; None for `text`, which asks for nothing."""
        if self.type == "text":
            return None
        return self.model_dump(by_alias=True, exclude_none=True)


Stop = Annotated[str, Field(min_length=1, max_length=1_000)]


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
    rag_retrieval_strategy: str | None = Field(default=None, min_length=1)
    include_sources: bool | None = None
    sources_limit: int | None = Field(default=None, ge=1, le=50)
    stop: Stop | Annotated[list[Stop], Field(max_length=16)] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    response_format: ResponseFormat | None = None
    n_ctx: int | None = Field(default=None, ge=128, le=131_072)
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

    def plain(self) -> ChatRequest:
        """The request as the chat turn takes it."""
        special = {"messages", "stream", "tools", "tool_choice", "stop", "response_format"}
        return ChatRequest(
            messages=[m.plain() for m in self.messages],
            **self.model_dump(exclude=special | {"include_sources"}),
            include_sources=bool(self.include_sources),
            stop=(self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ()),
            response_format=self.response_format.body() if self.response_format else None,
            tools=[tool.model_dump(exclude_none=True) for tool in self.tools],
            tool_choice=(
                self.tool_choice.model_dump()
                if isinstance(self.tool_choice, NamedToolChoice)
                else self.tool_choice
            ),
        )
