"""Pydantic models for `llamafarm.yaml`. Unknown keys are errors; names cross-reference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from llamafarm.config.components import inline_components
from llamafarm.config.voice import Voice
from llamafarm.errors import ConfigInvalid, LfError, NotFound
from llamafarm.names import is_valid_name

Provider = Literal["universal", "ollama", "openai", "lemonade"]
DEFAULT_TOOL_ROUNDS = 5
MAX_TOOL_ROUNDS = 20
DEFAULT_TOOL_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 60.0


def _check_name(value: str) -> str:
    if not is_valid_name(value):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
NonEmpty = Annotated[str, Field(min_length=1)]


class StrictModel(BaseModel):
    """A config block: unknown keys are errors.

    `UNSUPPORTED` names the fields a file may set (LlamaFarm's schema has them) that this
    server does not act on, each with why or what it does instead; `config_warnings` reports
    every one a file sets.
    """

    model_config = ConfigDict(extra="forbid")
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {}


def _require_unique(where: str, names: Iterable[str]) -> None:
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{where}: duplicate names {repeated}")


def _require_known(where: str, value: str | None, known: list[str], what: str) -> None:
    if value is not None and value not in known:
        raise ValueError(f"{where}: unknown {what} {value!r} (known: {', '.join(known) or 'none'})")


class PromptMessage(StrictModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(description="Text; `{{var}}` and `{{var | default}}` are placeholders.")
    tool_call_id: str | None = Field(
        default=None, min_length=1, description="A `tool` message: the call it answers."
    )


class PromptSet(StrictModel):
    name: Name
    messages: list[PromptMessage] = Field(
        default_factory=list,
        description="May be empty (LlamaFarm's default): a set that adds nothing.",
    )


LOAD_OPTIONS = (
    "n_ctx",
    "n_parallel",
    "n_batch",
    "n_gpu_layers",
    "n_threads",
    "flash_attn",
    "use_mmap",
    "use_mlock",
    "cache_type_k",
    "cache_type_v",
)
"""The `extra_body` keys that say how a local (`universal`) model is loaded, not what it says."""
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
"""The KV cache types llama.cpp takes (its `--cache-type-k/-v`)."""


class ExtraBody(BaseModel):
    """Provider-specific parameters: for `universal` the load options below start llama.cpp and
    any other key goes into its request; for the other providers everything goes into the
    request body (as the OpenAI client's `extra_body` does)."""

    model_config = ConfigDict(extra="allow")
    n_ctx: int | None = Field(
        default=None, ge=1, description="Context window in tokens (of each slot, for universal)."
    )
    n_parallel: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="universal: generations served at once (llama.cpp slots, each with a "
        "context of its own); 4 by default, 8 for the bundled model. Beyond them requests "
        "wait, first come first served.",
    )
    n_batch: int | None = Field(default=None, ge=1)
    n_gpu_layers: int | None = Field(default=None, ge=-1)
    n_threads: int | None = Field(default=None, ge=1)
    flash_attn: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    cache_type_k: CacheType | None = None
    cache_type_v: CacheType | None = None

    def body(self) -> dict[str, Any]:
        """Every key that was set, as it goes into a request body."""
        return self.model_dump(exclude_unset=True)


class EncoderConfig(StrictModel):
    """LlamaFarm's settings of BERT-style encoder models served by its universal runtime."""

    max_length: int | None = Field(default=None, ge=1)
    use_flash_attention: bool = True
    task: Literal["embedding", "classification", "reranking", "ner"] = "embedding"


class ToolDefinition(StrictModel):
    """A tool the config offers the model (LlamaFarm's `definitions/Tool`); the model's calls of
    it go back to the client as `tool_calls`, like the client's own tools."""

    type: Literal["function"] = "function"
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Letters, digits, '_', '-', '.', ':' (LlamaFarm's own tools are named like "
        "`cli.dataset_upload`; OpenAI's API itself takes no '.' or ':').",
    )
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """The tool as OpenAI's request carries it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


RAG_CONTEXT_SHARE = 0.4
"""The share of the prompt's room (the window less the answer's) that retrieved chunks may take."""


class LemonadeConfig(StrictModel):
    """How LlamaFarm starts a Lemonade server; we only connect to one (on `port`)."""

    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "backend": "llamafarm does not start Lemonade; choose its backend when you start it",
        "context_size": "llamafarm does not start Lemonade; set its context when you start it",
        "auto_download": "llamafarm does not start Lemonade; pull the model with Lemonade itself",
    }
    backend: Literal["llamacpp", "onnx", "transformers"] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    host: str | None = None
    context_size: int | None = Field(default=None, ge=1)
    auto_download: bool | None = None


class ModelSettings(StrictModel):
    """What a model is run with; shared by a named model and the flat runtime form."""

    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "instructor_mode": "structured output through instructor is not used; "
        "send `response_format` in the chat request instead",
        "encoder_config": "encoder models are not served by the chat runtime; "
        "embedders are configured under rag.databases",
    }
    base_url: str | None = None
    api_key: str | None = None
    description: str | None = None
    prompts: list[str] = Field(default_factory=list, description="Names of prompt sets to apply.")
    model_api_parameters: dict[str, Any] = Field(default_factory=dict)
    extra_body: ExtraBody = Field(default_factory=ExtraBody)
    timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for a model server's next bytes."
    )
    mcp_servers: list[str] | None = Field(
        default=None,
        description="Names of the project's MCP servers whose tools the model may call; "
        "absent: all of them, []: none.",
    )
    max_tool_rounds: int = Field(
        default=DEFAULT_TOOL_ROUNDS,
        ge=1,
        le=MAX_TOOL_ROUNDS,
        description="Rounds of tool calls in one completion before the model must answer.",
    )
    context_window: int | None = Field(
        default=None,
        ge=64,
        description="Tokens the model reads (prompt and answer): the window a long conversation "
        "is fitted to. Remote models are fitted only when this (or an `n_ctx` in "
        "`model_api_parameters`/`extra_body`) says; `universal` reads its own, which this caps.",
    )
    rag_context_share: float = Field(
        default=RAG_CONTEXT_SHARE,
        ge=0,
        le=1,
        description="The share of the prompt's room that retrieved context may take.",
    )
    tool_call_strategy: Literal["native_api", "prompt_based"] = Field(
        default="native_api",
        description="`native_api`: tools go in the request's `tools`; `prompt_based`: they are "
        "described in a system message and the model's calls read from its text.",
    )
    tools: list[ToolDefinition] = Field(default_factory=list)
    prompt_format: str | None = Field(
        default=None, description="Accepted for LlamaFarm files, which do not use it either."
    )
    instructor_mode: str | None = None
    encoder_config: EncoderConfig | None = None
    keep_loaded: bool = Field(
        default=False,
        description="universal: load the model when the server starts and never unload it "
        "(other local models load on first use and unload after LF_MODEL_IDLE_TTL idle "
        "seconds).",
    )
    rag_enabled: bool | None = Field(
        default=None, description="RAG for this model's requests unless a request says."
    )
    target_database: str | None = Field(
        default=None, description="The database this model's requests search unless one says."
    )
    lemonade: LemonadeConfig | None = None

    @model_validator(mode="after")
    def _unique_tools(self) -> ModelSettings:
        _require_unique("tools", [tool.name for tool in self.tools])
        return self


class ModelConfig(ModelSettings):
    """One chat model a project can use."""

    name: Name
    provider: Provider
    model: NonEmpty
    default: bool = Field(
        default=False, description="The default model when runtime.default_model is not set."
    )


class Runtime(ModelSettings):
    """Either the flat form (`provider`, `model`, ...) or `models` with a `default_model`."""

    provider: Provider | None = None
    model: NonEmpty | None = None
    models: list[ModelConfig] = Field(default_factory=list)
    default_model: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Runtime:
        flat = self.provider is not None or self.model is not None
        if flat and self.models:
            raise ValueError("use either the flat form (provider, model) or models, not both")
        if flat and (self.provider is None or self.model is None):
            raise ValueError("the flat form needs both provider and model")
        if not flat and not self.models:
            raise ValueError("needs provider and model, or a non-empty models list")
        if flat and self.default_model is not None:
            raise ValueError("default_model belongs with the models list")
        names = [m.name for m in self.models]
        _require_unique("models", names)
        _require_known("default_model", self.default_model, names, "model")
        return self

    def model_list(self) -> list[ModelConfig]:
        """The configured models; the flat form is one model named `default`."""
        if self.models:
            return list(self.models)
        assert self.provider is not None and self.model is not None  # checked by _one_form
        settings = {name: getattr(self, name) for name in ModelSettings.model_fields}
        return [
            ModelConfig.model_validate(
                {**settings, "name": "default", "provider": self.provider, "model": self.model}
            )
        ]

    def default(self) -> ModelConfig:
        """`default_model`, else the first model marked `default: true`, else the first."""
        models = self.model_list()
        if self.default_model is not None:
            return next(m for m in models if m.name == self.default_model)
        return next((m for m in models if m.default), models[0])


class EmbeddingStrategy(StrictModel):
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "condition": "not evaluated: every chunk is embedded with the database's default "
        "embedding strategy (LlamaFarm 0.0.27 does not evaluate it either)",
    }

    name: Name
    type: NonEmpty
    config: dict[str, Any] = Field(default_factory=dict)
    condition: str | None = Field(
        default=None, description="LlamaFarm's condition for using this embedding; not evaluated."
    )
    priority: int = Field(
        default=0, description="Without default_embedding_strategy the lowest priority embeds."
    )


class RetrievalStrategy(StrictModel):
    name: Name
    type: NonEmpty
    config: dict[str, Any] = Field(default_factory=dict)
    default: bool = False


class Database(StrictModel):
    name: Name
    type: NonEmpty
    config: dict[str, Any] = Field(default_factory=dict)
    embedding_strategies: list[EmbeddingStrategy] = Field(default_factory=list)
    embedding_strategy: Name | None = Field(
        default=None,
        description="Name of a strategy under components.embedding_strategies, used when "
        "embedding_strategies is empty.",
    )
    retrieval_strategies: list[RetrievalStrategy] = Field(default_factory=list)
    retrieval_strategy: Name | None = Field(
        default=None,
        description="Name of a strategy under components.retrieval_strategies, used when "
        "retrieval_strategies is empty.",
    )
    default_embedding_strategy: str | None = None
    default_retrieval_strategy: str | None = None

    @model_validator(mode="after")
    def _references(self) -> Database:
        # Component references were inlined into the lists by ProjectConfig before this runs.
        embedders = [s.name for s in self.embedding_strategies]
        retrievers = [s.name for s in self.retrieval_strategies]
        _require_unique("embedding_strategies", embedders)
        _require_unique("retrieval_strategies", retrievers)
        _require_known(
            "default_embedding_strategy",
            self.default_embedding_strategy,
            embedders,
            "embedding strategy",
        )
        _require_known(
            "default_retrieval_strategy",
            self.default_retrieval_strategy,
            retrievers,
            "retrieval strategy",
        )
        if sum(s.default for s in self.retrieval_strategies) > 1:
            raise ValueError("retrieval_strategies: at most one may have default: true")
        return self

    def embedding(self) -> EmbeddingStrategy | None:
        """The strategy that embeds chunks and queries: the named default, else lowest priority."""
        chosen = self.default_embedding_strategy
        return next(
            (e for e in self.embedding_strategies if e.name == chosen),
            min(self.embedding_strategies, key=lambda e: e.priority, default=None),
        )

    def required_embedding(
        self, *, error: Callable[[str], LfError] = ConfigInvalid
    ) -> EmbeddingStrategy:
        """`embedding()`, or `error` for a database that has none to embed with (the one
        check of it: a stored config's is ConfigInvalid, a client's new database BadRequest)."""
        embedding = self.embedding()
        if embedding is None:
            raise error(f"Database {self.name!r} has no embedding_strategies")
        return embedding


class Parser(StrictModel):
    type: NonEmpty
    config: dict[str, Any] = Field(default_factory=dict)
    file_extensions: list[str] | None = Field(
        default=None, description="Extensions this parser handles, e.g. ['.pdf']."
    )
    file_include_patterns: list[str] = Field(default_factory=list)
    mime_types: list[str] | None = Field(
        default=None, description="MIME types this parser handles, e.g. ['application/pdf']."
    )
    priority: int = Field(default=50, description="Lower runs first when several parsers match.")
    fallback_parser: str | None = Field(
        default=None, description="Parser type to try when this one fails."
    )


class NamedParser(Parser):
    """A reusable parser under `components.parsers`, referenced by its name."""

    name: Name


class Extractor(StrictModel):
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "condition": "not evaluated: the extractor runs on every file its "
        "file_include_patterns match (LlamaFarm 0.0.27 does not evaluate it either)",
        "required_for": "not evaluated: the extractor runs for every database "
        "(LlamaFarm 0.0.27 does not evaluate it either)",
    }

    type: NonEmpty
    config: dict[str, Any] = Field(default_factory=dict)
    file_include_patterns: list[str] = Field(default_factory=list)
    priority: int = 50
    condition: str | None = None
    required_for: list[str] | None = None


class DataProcessingStrategy(StrictModel):
    name: Name
    description: str | None = None
    parsers: list[Parser] = Field(
        min_length=1,
        description="Parsers; a name instead of one refers to a parser under components.parsers.",
    )
    extractors: list[Extractor] = Field(default_factory=list)


UNIVERSAL_RAG = "universal_rag"
"""LlamaFarm's built-in strategy: what a dataset without `data_processing_strategy` uses."""


def universal_rag() -> DataProcessingStrategy:
    """The built-in `universal_rag` strategy, for projects that define none of that name.

    LlamaFarm's is one parser for every format and one extractor for everything
    (`rag/core/strategies/handler.py`); ours is each of our parsers on its own extensions.
    """
    chunking = {"chunk_size": 1000, "chunk_overlap": 100, "chunk_strategy": "paragraphs"}
    types = ["PDFParser", "DocxParser", "MarkdownParser", "TextParser", "CSVParser"]
    types += ["HTMLParser", "ExcelParser", "PPTXParser", "JSONParser", "EPUBParser"]
    types += ["MsgParser", "EmlParser"]
    types += ["ImageParser"]
    return DataProcessingStrategy(
        name=UNIVERSAL_RAG,
        description="Built in: every supported format, each with its own parser",
        parsers=[Parser(type=t, config=dict(chunking)) for t in types],
        extractors=[
            Extractor(type="KeywordExtractor", config={"max_keywords": 10}),
            Extractor(type="HeadingExtractor"),
        ],
    )


class ComponentDefaults(StrictModel):
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "parser": "not used: every data processing strategy names its parsers "
        "(LlamaFarm 0.0.27 does not use it either)",
    }

    embedding_strategy: Name | None = Field(
        default=None, description="For databases that give no embedding strategy."
    )
    retrieval_strategy: Name | None = Field(
        default=None, description="For databases that give no retrieval strategy."
    )
    parser: Name | None = None


class Components(StrictModel):
    """Reusable strategies and parsers, defined once and referenced by name."""

    embedding_strategies: list[EmbeddingStrategy] = Field(default_factory=list)
    retrieval_strategies: list[RetrievalStrategy] = Field(default_factory=list)
    parsers: list[NamedParser] = Field(default_factory=list)
    defaults: ComponentDefaults | None = None

    @model_validator(mode="after")
    def _unique(self) -> Components:
        _require_unique("embedding_strategies", [s.name for s in self.embedding_strategies])
        _require_unique("retrieval_strategies", [s.name for s in self.retrieval_strategies])
        _require_unique("parsers", [p.name for p in self.parsers])
        return self


class Rag(StrictModel):
    components: Components | None = Field(
        default=None, description="Reusable components, like the top-level components."
    )
    default_database: str | None = None
    databases: list[Database] = Field(default_factory=list)
    data_processing_strategies: list[DataProcessingStrategy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Rag:
        databases = [d.name for d in self.databases]
        _require_unique("databases", databases)
        _require_unique(
            "data_processing_strategies", [s.name for s in self.data_processing_strategies]
        )
        _require_known("default_database", self.default_database, databases, "database")
        return self


class Dataset(StrictModel):
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "files": "ignored: the server keeps the list of a dataset's files itself "
        "(GET /v1/projects/{namespace}/{project}/datasets shows it)",
    }

    name: Name
    database: NonEmpty
    data_processing_strategy: NonEmpty = Field(
        default=UNIVERSAL_RAG,
        description="A strategy of rag.data_processing_strategies; `universal_rag` is built in.",
    )
    auto_process: bool | None = Field(
        default=None,
        description="Process each upload at once (an upload's auto_process parameter wins); "
        "absent: only when the upload asks.",
    )
    files: list[str] | None = Field(default=None, description="LlamaFarm's file hashes; ignored.")


class McpServer(StrictModel):
    """An MCP server whose tools chat models may call."""

    name: Name
    transport: Literal["stdio", "http", "sse"]
    command: str | None = Field(default=None, description="stdio: the program to start.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: variables added to a minimal environment."
    )
    url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("url", "base_url"),
        description="http / sse: the server's endpoint (`base_url` is accepted as well).",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(
        default=DEFAULT_TOOL_TIMEOUT,
        gt=0,
        le=600,
        description="Seconds each tool call may take to answer.",
    )
    start_timeout: float = Field(
        default=DEFAULT_START_TIMEOUT,
        gt=0,
        le=600,
        description="Seconds the server may take to start: connect and list its tools.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data and "base_url" in data:
            raise ValueError("give url or base_url, not both")
        return data

    @model_validator(mode="after")
    def _endpoint(self) -> McpServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs a command")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"an {self.transport} server needs a url")
        return self


class Mcp(StrictModel):
    servers: list[McpServer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Mcp:
        _require_unique("servers", [s.name for s in self.servers])
        return self


class ProjectConfig(StrictModel):
    """The whole `llamafarm.yaml` of one project."""

    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "voice": "voice chat is not supported: the block is kept but nothing uses it",
    }

    version: Literal["v1"] = "v1"
    name: Name
    namespace: Name
    components: Components | None = None
    runtime: Runtime
    prompts: list[PromptSet] = Field(default_factory=list)
    rag: Rag | None = None
    datasets: list[Dataset] = Field(default_factory=list)
    mcp: Mcp | None = None
    voice: Voice | None = None

    def dataset(self, name: str) -> Dataset:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise NotFound(f"Dataset {name!r} not found in project {self.namespace}/{self.name}")

    def database_of(self, dataset: Dataset) -> Database:
        """The rag database a dataset feeds; validation guarantees it exists."""
        assert self.rag is not None
        return next(d for d in self.rag.databases if d.name == dataset.database)

    def processing_strategies(self) -> list[DataProcessingStrategy]:
        """The strategies datasets may use: the file's, and `universal_rag` unless it has one."""
        strategies = list(self.rag.data_processing_strategies) if self.rag else []
        if all(s.name != UNIVERSAL_RAG for s in strategies):
            strategies.append(universal_rag())
        return strategies

    def strategy_of(self, dataset: Dataset) -> DataProcessingStrategy:
        """The data processing strategy of a dataset; validation guarantees it exists."""
        return next(
            s for s in self.processing_strategies() if s.name == dataset.data_processing_strategy
        )

    @model_validator(mode="before")
    @classmethod
    def _inline_components(cls, data: Any) -> Any:
        return inline_components(
            data,
            dropped={
                "embedding_strategies": EmbeddingStrategy.UNSUPPORTED.keys(),
                "retrieval_strategies": RetrievalStrategy.UNSUPPORTED.keys(),
                "parsers": Parser.UNSUPPORTED.keys(),
            },
        )

    @model_validator(mode="after")
    def _references(self) -> ProjectConfig:
        prompt_names = [p.name for p in self.prompts]
        _require_unique("prompts", prompt_names)
        for i, model in enumerate(self.runtime.model_list()):
            where = f"runtime.models[{i}].prompts" if self.runtime.models else "runtime.prompts"
            for prompt in model.prompts:
                _require_known(where, prompt, prompt_names, "prompt set")
            servers = [s.name for s in self.mcp.servers] if self.mcp else []
            where = (
                f"runtime.models[{i}].mcp_servers" if self.runtime.models else "runtime.mcp_servers"
            )
            for server in model.mcp_servers or []:
                _require_known(where, server, servers, "MCP server")
        databases = [d.name for d in self.rag.databases] if self.rag else []
        for i, model in enumerate(self.runtime.model_list()):
            where = (
                f"runtime.models[{i}].target_database"
                if self.runtime.models
                else "runtime.target_database"
            )
            _require_known(where, model.target_database, databases, "database")
        _require_unique("datasets", [d.name for d in self.datasets])
        strategies = [s.name for s in self.processing_strategies()]
        for i, dataset in enumerate(self.datasets):
            _require_known(f"datasets[{i}].database", dataset.database, databases, "database")
            _require_known(
                f"datasets[{i}].data_processing_strategy",
                dataset.data_processing_strategy,
                strategies,
                "data processing strategy",
            )
        return self
